"""Home Assistant MQTT discovery: the retained config messages that make a kiosk appear as a device.

One `sensor` config per value, on `<discovery_prefix>/sensor/<node_id>/<object_id>/config` (Home Assistant's
documented topic), all sharing one `device` block and edged's own `status` topic for availability:

- `faces`: faces in view, `{{ value_json.faces | length }}` of the retained `state` topic;
- `emotion`: the state's `dominant_emotion`, an `enum` sensor whose options are the 7 labels and `none`;
- `fps`: frames per second from the `stats` topic.

`expire_after` makes a value go unavailable when its topic stops updating (a stalled camera keeps the device
`online` but stops state; stats go on with the frame rate falling to 0). The publisher sends these on every
connect and again whenever Home Assistant announces `online` on its status topic (its birth message), which is
how a restarted Home Assistant that lost its retained subscriptions finds the device again. Turned off, edged
publishes nothing under the discovery prefix and leaves configs from an earlier run alone (docs/homeassistant.md
says how to remove them).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from dataclasses import dataclass

from edged.payloads import EMOTIONS, STATUS_OFFLINE, STATUS_ONLINE
from edged.settings import HomeAssistantSettings, MqttSettings

# What `emotion` reads when nobody is in view (the labels are the payload contract's EMOTIONS, docs/mqtt.md).
NO_EMOTION = "none"
_NOT_IN_ID = re.compile(r"[^a-zA-Z0-9_-]")  # node_id and object_id must match [a-zA-Z0-9_-]+
_NOT_IN_SLUG = re.compile(r"[^a-z0-9]+")
# The shortest time a value stays valid without an update: the camera may take this long to reopen.
MIN_EXPIRE_S = 30


def node_id(prefix: str, device_id: str) -> str:
    """`<prefix>_<device>` in the characters Home Assistant allows in a topic id; a short hash of the original
    is appended when characters had to be replaced, so `kiosk.1` and `kiosk_1` stay two devices."""
    raw = f"{prefix}_{device_id}"
    clean = _NOT_IN_ID.sub("_", raw)
    return clean if clean == raw else f"{clean}-{hashlib.sha1(raw.encode()).hexdigest()[:6]}"


def entity_slug(prefix: str, device_id: str) -> str:
    """`<prefix>_<device>` as Home Assistant's entity-id rules want it: lower-case ASCII letters, digits and single
    `_`, neither leading nor trailing (its validator rejects `sensor.a__b` and `sensor.a_`); accents are dropped as
    Home Assistant's own slugify does (`café` -> `cafe`). The node id's hash follows when the node id has one, so
    `kiosk.1` and `kiosk_1` keep distinct entity ids."""
    raw = f"{prefix}_{device_id}"
    ascii_ = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode().lower()
    slug = _NOT_IN_SLUG.sub("_", ascii_).strip("_") or "edged"
    node = node_id(prefix, device_id)
    return slug if node == raw else f"{slug}_{node.rsplit('-', 1)[1]}"


def expire_after(interval_s: float, updates: int = 4) -> int:
    """Seconds a value stays valid: `updates` missed updates of a topic sent every `interval_s`, at least MIN_EXPIRE_S."""
    return max(MIN_EXPIRE_S, math.ceil(interval_s * updates))


@dataclass(frozen=True)
class HomeAssistantDiscovery:
    """The discovery configs of one device, and Home Assistant's status topic to listen on."""

    ha: HomeAssistantSettings
    mqtt: MqttSettings
    device_id: str
    model_id: str
    version: str

    @property
    def node(self) -> str:
        return node_id(self.mqtt.topic_prefix, self.device_id)

    @property
    def entity(self) -> str:
        """The first part of the suggested entity ids: `sensor.<entity>_<sensor>`."""
        return entity_slug(self.mqtt.topic_prefix, self.device_id)

    @property
    def status_topic(self) -> str:
        """Home Assistant's birth and will topic; `online` there means: send discovery again."""
        return self.ha.status_topic

    def is_birth(self, topic: str, payload: bytes) -> bool:
        return topic == self.ha.status_topic and payload.strip() == STATUS_ONLINE.encode()

    def config_topic(self, object_id: str) -> str:
        return f"{self.ha.discovery_prefix}/sensor/{self.node}/{object_id}/config"

    def configs(self) -> dict[str, dict[str, object]]:
        """The config of each sensor, by discovery topic."""
        base = f"{self.mqtt.topic_prefix}/{self.device_id}"
        device = {
            "identifiers": [self.node],
            "name": self.device_id,
            "manufacturer": "edged",
            "model": "Emotion sensor",
            "model_id": self.model_id,
            "sw_version": self.version,
        }
        common = {
            "device": device,
            "origin": {"name": "edged", "sw_version": self.version},
            "availability_topic": f"{base}/status",
            "payload_available": STATUS_ONLINE,
            "payload_not_available": STATUS_OFFLINE,
            "qos": 0,
        }
        state_expiry = expire_after(self.mqtt.state_interval_s)
        sensors: dict[str, dict[str, object]] = {
            "faces": {
                "name": "Faces in view",
                "state_topic": f"{base}/state",
                "value_template": "{{ value_json.faces | length }}",
                "state_class": "measurement",
                "icon": "mdi:account-multiple",
                "expire_after": state_expiry,
            },
            "emotion": {
                "name": "Dominant emotion",
                "state_topic": f"{base}/state",
                "value_template": "{{ value_json.dominant_emotion | default('" + NO_EMOTION + "') }}",
                "device_class": "enum",
                "options": [*EMOTIONS, NO_EMOTION],
                "icon": "mdi:emoticon-outline",
                "expire_after": state_expiry,
            },
            "fps": {
                "name": "Frame rate",
                "state_topic": f"{base}/stats",
                "value_template": "{{ value_json.fps }}",
                "state_class": "measurement",
                "unit_of_measurement": "fps",
                "suggested_display_precision": 1,
                "icon": "mdi:speedometer",
                "entity_category": "diagnostic",
                # stats come every stats_interval_s: one missed message must not blank the value
                "expire_after": expire_after(self.mqtt.stats_interval_s, updates=3),
            },
        }
        return {
            self.config_topic(object_id): {
                **config,
                **common,
                "unique_id": f"{self.node}_{object_id}",
                # Home Assistant 2025.10 and later read default_entity_id; older ones object_id (newer ones then
                # only warn while default_entity_id is there): both, so the entity ids are the same everywhere.
                "default_entity_id": f"sensor.{self.entity}_{object_id}",
                "object_id": f"{self.entity}_{object_id}",
            }
            for object_id, config in sensors.items()
        }

    def messages(self) -> list[tuple[str, str]]:
        """(topic, JSON payload) of every config, to publish retained with QoS 1."""
        return [(topic, json.dumps(config, separators=(",", ":"))) for topic, config in self.configs().items()]


def discovery_for(
    ha: HomeAssistantSettings, mqtt: MqttSettings, device_id: str, model_id: str, version: str
) -> HomeAssistantDiscovery | None:
    """The discovery of a device, or None when EDGED_HOMEASSISTANT__ENABLED is off."""
    return HomeAssistantDiscovery(ha, mqtt, device_id, model_id, version) if ha.enabled else None
