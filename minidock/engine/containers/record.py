"""A container's record: the Container, its State machine and Docker's config.v2.json form.

    create          start            process ends        rm
    ------> created ------> running ---------------> exited ------> (gone)
               |               |  ^ pause / unpause      |  start
               |               v  |                      +------> running
               |             paused
               +--- start fails (126/127) ----------------> exited
      removing: while rm tears a container down;  dead: a removal that failed half-way

The status word and the rest of Docker's ``State`` object are saved in config.v2.json;
every change goes through :meth:`State.transition`, which refuses the moves this diagram
does not have. The HostConfig is kept as Docker's hostconfig.json has it, a plain dict
written once at create; :meth:`Container.to_inspect` is what ``inspect`` shows of both.
Pure: reading and writing the files is :mod:`minidock.engine.containers.store`'s.
"""

from __future__ import annotations

import enum
import os
import time

from minidock.errors import Conflict
from minidock.paths import Paths
from minidock.records import field, record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 ms of a start)
if TYPE_CHECKING:
    from typing import Any

DRIVER = "overlay2"
EXIT_UNKNOWN = 255  # Docker's code for a container whose end nobody saw
ZERO_TIME = "0001-01-01T00:00:00Z"


class Status(str, enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    REMOVING = "removing"
    EXITED = "exited"
    DEAD = "dead"


_ALLOWED: dict[Status, set[Status]] = {
    Status.CREATED: {Status.RUNNING, Status.EXITED, Status.REMOVING},
    Status.RUNNING: {Status.EXITED, Status.PAUSED},
    Status.PAUSED: {Status.RUNNING, Status.EXITED},
    Status.RESTARTING: {Status.RUNNING, Status.EXITED},
    Status.EXITED: {Status.RUNNING, Status.REMOVING},
    Status.REMOVING: {Status.DEAD},
    Status.DEAD: {Status.REMOVING},
}


@record
class State:
    status: Status = Status.CREATED
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    oom_killed: bool = False
    #: run --timings: ms per phase of the last start (shown as State.Timings)
    timings: dict[str, float] = field(default_factory=dict)

    def transition(self, new: Status) -> None:
        if new not in _ALLOWED[self.status]:
            raise Conflict(f"container cannot go from {self.status.value} to {new.value}")
        self.status = new

    @property
    def running(self) -> bool:
        return self.status in (Status.RUNNING, Status.PAUSED)

    def to_docker(self) -> dict[str, Any]:
        """Docker's ``State`` object (config.v2.json and inspect)."""
        return {
            "Status": self.status.value,
            "Running": self.running,
            "Paused": self.status == Status.PAUSED,
            "Restarting": self.status == Status.RESTARTING,
            "OOMKilled": self.oom_killed,
            "Dead": self.status == Status.DEAD,
            "Pid": self.pid if self.running else 0,
            "ExitCode": self.exit_code,
            "Error": self.error,
            "StartedAt": self.started_at,
            "FinishedAt": self.finished_at,
            **({"Timings": {k: round(v, 2) for k, v in self.timings.items()}}
               if self.timings else {}),
        }

    @classmethod
    def from_docker(cls, d: dict[str, Any]) -> State:
        return cls(
            status=Status(d.get("Status", "created")),
            pid=int(d.get("Pid", 0)),
            exit_code=int(d.get("ExitCode", 0)),
            error=d.get("Error", ""),
            started_at=d.get("StartedAt", ZERO_TIME),
            finished_at=d.get("FinishedAt", ZERO_TIME),
            oom_killed=bool(d.get("OOMKilled", False)),
            timings=dict(d.get("Timings") or {}),
        )


@record
class Container:
    id: str
    name: str
    created: str
    image_id: str
    image_ref: str
    path: str
    args: list[str]
    config: dict[str, Any]
    host_config: dict[str, Any]
    state: State = field(default_factory=State)
    dir: str = ""
    #: what the network setup of the current run gave (net.attach): IPAddress, Gateway, ...
    endpoint: dict[str, Any] = field(default_factory=dict)
    #: what was asked of a user network at create: {"IPAMConfig": {"IPv4Address": ...} or
    #: None, "Aliases": [...] or None} (Docker's EndpointSettings, kept when stopped)
    networking: dict[str, Any] = field(default_factory=dict)
    #: networks joined with `network connect`: name -> {"IPAMConfig", "Aliases"} and, while
    #: the container runs, its endpoint there (NetworkID, EndpointID, IPAddress, ...)
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Docker's MountPoints by destination: -v, --mount, --volumes-from, the image's
    #: VOLUMEs (engine/containers/mounts.py)
    mount_points: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def to_config_v2(self, paths: Paths) -> dict[str, Any]:
        d = self.dir
        return {
            "StreamConfig": {},
            "State": self.state.to_docker(),
            "ID": self.id,
            "Created": self.created,
            "Managed": False,
            "Path": self.path,
            "Args": self.args,
            "Config": self.config,
            "Image": self.image_id,
            "ImageManifest": None,
            "NetworkSettings": network_settings(self),
            "LogPath": log_path(self),
            "Name": "/" + self.name,
            "Driver": DRIVER,
            "OS": "linux",
            "RestartCount": 0,
            "HasBeenStartedBefore": self.state.started_at != "0001-01-01T00:00:00Z",
            "HasBeenManuallyStopped": False,
            "MountPoints": self.mount_points,
            "SecretReferences": None,
            "ConfigReferences": None,
            "AppArmorProfile": "",
            "HostnamePath": os.path.join(d, "hostname"),
            "HostsPath": os.path.join(d, "hosts"),
            "ShmPath": "",
            "ResolvConfPath": os.path.join(d, "resolv.conf"),
            "SeccompProfile": "",
            "NoNewPrivileges": False,
            "LocalLogCacheMeta": {"HaveNotifyEnabled": False},
        }

    @classmethod
    def from_config_v2(cls, doc: dict[str, Any], host_config: dict[str, Any],
                       directory: str) -> Container:
        return cls(
            id=doc["ID"],
            name=doc["Name"].lstrip("/"),
            created=doc["Created"],
            image_id=doc["Image"],
            image_ref=doc["Config"].get("Image", ""),
            path=doc["Path"],
            args=doc["Args"],
            config=doc["Config"],
            host_config=host_config,
            state=State.from_docker(doc["State"]),
            dir=directory,
            endpoint=_endpoint_of(doc.get("NetworkSettings") or {}, _primary(host_config)),
            networking=_networking_of(doc.get("NetworkSettings") or {}, _primary(host_config)),
            extra={name: {k: v for k, v in entry.items() if k in _EXTRA_KEYS and v}
                   for name, entry in ((doc.get("NetworkSettings") or {}).get("Networks")
                                       or {}).items()
                   if name != _primary(host_config)},
            mount_points=dict(doc.get("MountPoints") or {}),
        )

    def to_inspect(self, paths: Paths, graph_driver_data: dict[str, Any]) -> dict[str, Any]:
        """Docker's ``inspect`` document; ``graph_driver_data``: the rw layer's overlay dirs."""
        doc = self.to_config_v2(paths)
        return {
            "Id": self.id,
            "Created": self.created,
            "Path": self.path,
            "Args": self.args,
            "State": doc["State"],
            "Image": self.image_id,
            "ResolvConfPath": doc["ResolvConfPath"],
            "HostnamePath": doc["HostnamePath"],
            "HostsPath": doc["HostsPath"],
            "LogPath": doc["LogPath"],
            "Name": "/" + self.name,
            "RestartCount": 0,
            "Driver": DRIVER,
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": None,
            "HostConfig": self.host_config,
            "GraphDriver": {"Name": DRIVER, "Data": graph_driver_data},
            "Mounts": _mounts(self.mount_points),
            "Config": self.config,
            "NetworkSettings": doc["NetworkSettings"],
        }


def _mounts(points: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """inspect's "Mounts" (Docker's MountPoint as the API shows it)."""
    out = []
    for point in points.values():
        entry: dict[str, Any] = {"Type": point["Type"]}
        if point["Type"] == "volume":
            entry["Name"] = point["Name"]
        entry.update({"Source": point["Source"], "Destination": point["Destination"]})
        if point["Type"] == "volume":
            entry["Driver"] = point["Driver"]
        entry.update({"Mode": point.get("Relabel", ""), "RW": point["RW"],
                      "Propagation": point.get("Propagation", "")})
        out.append(entry)
    return out


_ENDPOINT_KEYS = ("Bridge", "SandboxKey", "Gateway", "IPAddress", "IPPrefixLen", "MacAddress",
                  "Ports", "EndpointID", "NetworkID")


_EXTRA_KEYS = ("IPAMConfig", "Aliases", "NetworkID", "EndpointID", "Gateway", "IPAddress",
               "IPPrefixLen", "MacAddress")


def _primary(host_config: dict[str, Any]) -> str:
    return network_name(str(host_config.get("NetworkMode") or "default"))


def _endpoint_of(settings: dict[str, Any], primary: str) -> dict[str, Any]:
    """The run's endpoint back from a saved NetworkSettings (the network's entry holds the
    address on a user network: the top-level fields are the default bridge's only)."""
    out = {k: settings[k] for k in _ENDPOINT_KEYS if settings.get(k)}
    net = (settings.get("Networks") or {}).get(primary) or {}
    for k in ("NetworkID", "EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "MacAddress"):
        if net.get(k):
            out[k] = net[k]
    return out


#: --network values: "default" is Docker's name for the default bridge when none is given
NETWORK_MODES = ("default", "bridge", "host", "none")
BRIDGE_MODES = ("default", "bridge")


def network_name(mode: str) -> str:
    """The network a NetworkMode names: "default" is the default bridge, "bridge"."""
    return "bridge" if mode in ("default", "") else mode


def network_names(c: Container, network: str | None = None) -> list[str]:
    """What the other members of a user network (its first, or ``network``) call the
    container, as Docker's DNS answers: its name, its aliases there (the short id among
    them), name.network."""
    mode = network or str(c.host_config.get("NetworkMode") or "")
    asked = c.networking if network is None else c.extra.get(network) or {}
    aliases = [a for a in asked.get("Aliases") or [] if a != c.name]
    return [c.name, *aliases, f"{c.name}.{mode}"]


def on_a_bridge(mode: str) -> bool:
    """Whether a container of this NetworkMode gets a veth on a bridge (the default one or
    a user network's)."""
    return mode not in ("host", "none") and not mode.startswith("container:")


def _networking_of(settings: dict[str, Any], primary: str) -> dict[str, Any]:
    net = (settings.get("Networks") or {}).get(primary) or {}
    return {k: net[k] for k in ("IPAMConfig", "Aliases") if net.get(k)}


def network_settings(c: Container) -> dict[str, Any]:
    """Docker's NetworkSettings; the addresses and ports only while a run holds them."""
    mode = c.host_config.get("NetworkMode") or "default"
    ep = c.endpoint if c.state.running else {}
    top = ep if mode in BRIDGE_MODES else {}  # (Docker: the default bridge's only)
    return {
        "Bridge": "", "SandboxID": "", "SandboxKey": ep.get("SandboxKey", ""),
        "HairpinMode": bool(top.get("IPAddress")),  # minidock's bridge ports hairpin
        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": ep.get("Ports", {}),
        "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
        "EndpointID": top.get("EndpointID", ""),
        "Gateway": top.get("Gateway", ""), "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
        "IPAddress": top.get("IPAddress", ""), "IPPrefixLen": top.get("IPPrefixLen", 0),
        "IPv6Gateway": "", "MacAddress": top.get("MacAddress", ""),
        "Networks": {} if mode.startswith("container:") else {
            network_name(mode): _endpoint_settings(c.networking, ep),
            **{name: _endpoint_settings(e, e if c.state.running else {})
               for name, e in c.extra.items()}},
    }


def _endpoint_settings(asked: dict[str, Any], ep: dict[str, Any]) -> dict[str, Any]:
    """One entry of NetworkSettings.Networks (Docker's EndpointSettings)."""
    return {"IPAMConfig": asked.get("IPAMConfig"), "Links": None,
            "Aliases": asked.get("Aliases"),
            "NetworkID": ep.get("NetworkID", ""), "EndpointID": ep.get("EndpointID", ""),
            "Gateway": ep.get("Gateway", ""), "IPAddress": ep.get("IPAddress", ""),
            "IPPrefixLen": ep.get("IPPrefixLen", 0), "IPv6Gateway": "",
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "MacAddress": ep.get("MacAddress", ""), "DriverOpts": None}


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def log_path(c: Container) -> str:
    """Docker's json-file log: one JSON object per line (written by the monitor)."""
    return os.path.join(c.dir, f"{c.id}-json.log")

