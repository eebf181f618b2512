"""A local RTSP camera for tests: GStreamer's RTSP server (Debian's gir1.2-gst-rtsp-server-1.0, run by the system
python3 with python3-gi) serving a video file as RTP/JPEG at 15 fps, as many IP cameras do.

    /usr/bin/python3 tests/rtsp_server.py PORT CLIP      # rtsp://127.0.0.1:PORT/cam; prints "ready" when listening
"""

import sys


def main() -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    port, clip = sys.argv[1], sys.argv[2]
    server = GstRtspServer.RTSPServer()
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f"( filesrc location={clip} ! qtdemux ! avdec_mpeg4 ! videoconvert ! videorate ! "
                       "video/x-raw,framerate=15/1 ! jpegenc quality=80 ! rtpjpegpay name=pay0 pt=26 )")
    factory.set_shared(True)
    server.get_mount_points().add_factory("/cam", factory)
    server.attach(None)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
