"""The weak-link lab: emulated hosts in network namespaces, joined through a link emulator.

Topology, all inside namespaces this lab creates (nothing is added to the caller's namespace):

    <prefix>-box (10.77.0.1) --veth-- [ br0 in <prefix>-core ] --veth-- <prefix>-nurse (LAN)
                                          |
                              veth b<n> <-> emulator <-> h<n> veth      (in <prefix>-wan)
                                                            |
                                                     <prefix>-p1 (10.77.0.3)

Hosts made with `link=None` sit on the LAN bridge; hosts made with a profile reach the bridge
only through the emulator process, which shapes each direction (see harness.emulator).
"""

from __future__ import annotations

import atexit
import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import control
from harness.profiles import Profile

NETNS_DIR = Path("/run/netns")
#: The checkout holding the harness package: lab processes start from there.
CHECKOUT = Path(__file__).resolve().parent.parent
#: Namespaces are named <prefix><pid>x<n>-<role>; CLINICBOX_LAB_PREFIX (lowercase letters)
#: keeps several people's labs on one machine apart, also when sweeping stale ones.
PREFIX_ENV = "CLINICBOX_LAB_PREFIX"
_HOST_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
_OFFLOADS = ["tx", "off", "tso", "off", "gso", "off", "gro", "off", "sg", "off"]
_counter = itertools.count(1)
_open_labs: set[Lab] = set()


class LabUnavailable(RuntimeError):
    """This machine or user cannot build the lab (no rights to create namespaces, no tools)."""


@dataclass(frozen=True)
class Host:
    """An emulated host: its namespace and its address on the lab network."""

    name: str
    netns: str
    ip: str
    link: Profile | None = None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lab_prefix() -> str:
    """The namespace prefix: CLINICBOX_LAB_PREFIX, or "cblab"."""
    prefix = os.environ.get(PREFIX_ENV, "cblab")
    if not re.fullmatch(r"[a-z]{1,8}", prefix):
        raise LabUnavailable(f"{PREFIX_ENV} must be 1-8 lowercase letters, not {prefix!r}")
    return prefix


def sweep_stale() -> list[str]:
    """Kill what runs in, and delete, namespaces of labs (with this prefix) whose process
    died (SIGKILL)."""
    stale = re.compile(rf"^{lab_prefix()}(\d+)x\d+-")
    removed = []
    if not NETNS_DIR.is_dir():
        return removed
    for entry in sorted(NETNS_DIR.iterdir()):
        match = stale.match(entry.name)
        if match and not _pid_alive(int(match.group(1))):
            # Processes the dead lab started in there would otherwise keep running forever.
            pids = subprocess.run(["ip", "netns", "pids", entry.name], capture_output=True,
                                  text=True, timeout=10).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", entry.name], capture_output=True, timeout=10)
            removed.append(entry.name)
    return removed


class Lab:
    """Builds emulated hosts and links; tears everything down on close, whatever happened.

    Use as a context manager. Closing also happens at interpreter exit and on SIGTERM (turned
    into SystemExit in the main thread); SIGINT unwinds as KeyboardInterrupt.
    """

    def __init__(self, subnet: str = "10.77.0.0/24") -> None:
        self.prefix = f"{lab_prefix()}{os.getpid()}x{next(_counter)}"
        self._network = ipaddress.ip_network(subnet)
        self._addresses = self._network.hosts()
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self._emulator: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._lock = threading.Lock()
        self._previous_sigterm: Any = None
        self._closed = False
        self._started = False

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Create the LAN bridge; raises LabUnavailable when this machine cannot. Idempotent."""
        if self._closed:
            raise RuntimeError("a closed lab cannot start again; make a new one")
        if self._started:
            return
        for tool in ("ip", "ethtool"):
            if shutil.which(tool) is None:
                raise LabUnavailable(f"the weak-link lab needs the '{tool}' command")
        if os.geteuid() != 0:
            raise LabUnavailable("creating network namespaces needs root (CAP_SYS_ADMIN)")
        sweep_stale()
        _open_labs.add(self)
        self._install_sigterm()
        self._started = True
        try:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
            self._core = self._add_namespace("core", unavailable_on_failure=True)
            self._ip(["link", "add", "br0", "netns", self._core, "type", "bridge",
                      "forward_delay", "0", "stp_state", "0"])
            self._ns_script(self._core, ["ip link set br0 up"])
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop every process the lab started, the emulator, and delete its namespaces."""
        with self._lock:
            if self._closed or not self._started:
                self._closed = True
                return
            self._closed = True
        for proc in self._procs:
            _stop_group(proc)
        if self._emulator is not None:
            try:
                control.request(self._control_path, {"op": "quit"}, timeout=1.0)
            except (control.ControlError, ValueError):
                pass  # already gone or stuck: stopped below either way
            _stop_group(self._emulator)
        for netns in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=10)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        _open_labs.discard(self)
        self._restore_sigterm()

    # -- hosts and links -----------------------------------------------------------------

    def host(self, name: str, link: Profile | None = None) -> Host:
        """A new emulated host; with a profile it reaches the LAN only through the emulator."""
        if not _HOST_RE.match(name):
            raise ValueError("host names are 1-12 lowercase letters/digits, starting a letter")
        if name in self.hosts:
            raise ValueError(f"host {name!r} exists")
        index = len(self.hosts) + 1
        ip = str(next(self._addresses))
        netns = self._add_namespace(name)
        if link is None:
            self._ip(["link", "add", "eth0", "netns", netns, "type", "veth",
                      "peer", "name", f"p{index}", "netns", self._core])
        else:
            wan = self._wan()
            self._ip(["link", "add", "eth0", "netns", netns, "type", "veth",
                      "peer", "name", f"h{index}", "netns", wan])
            self._ip(["link", "add", f"b{index}", "netns", wan, "type", "veth",
                      "peer", "name", f"p{index}", "netns", self._core])
            self._ns_script(wan, _up_script([f"h{index}", f"b{index}"], promisc=True))
        port = f"p{index}"
        self._ns_script(self._core, _up_script([port]) + [f"ip link set {port} master br0"])
        self._ns_script(netns, _up_script(["eth0"]) + [
            f"ip addr add {ip}/{self._network.prefixlen} dev eth0",
            "ip link set lo up",
        ])
        if link is not None:
            self._control({"op": "add", "link": name, "host_if": f"h{index}",
                           "box_if": f"b{index}", "profile": link.to_dict()})
        host = Host(name, netns, ip, link)
        self.hosts[name] = host
        return host

    def lan_behind(self, router: Host, names: list[str], subnet: str) -> list[Host]:
        """Hosts on a private LAN (a bridge `lan0` in the router's namespace) whose gateway is
        `router`, which forwards; it holds the subnet's last address. What the router does to
        the traffic (NAT, filtering) is up to the caller (see harness.nat)."""
        network = ipaddress.ip_network(subnet)
        addresses = list(network.hosts())
        gateway = str(addresses[-1])
        self._ns_script(router.netns, [
            "sysctl -qw net.ipv4.ip_forward=1",
            "ip link add lan0 type bridge forward_delay 0 stp_state 0",
            f"ip addr add {gateway}/{network.prefixlen} dev lan0",
            "ip link set lan0 up",
        ])
        hosts = []
        for offset, name in enumerate(names):
            if not _HOST_RE.match(name) or name in self.hosts:
                raise ValueError(f"bad or taken host name {name!r}")
            netns = self._add_namespace(name)
            port = f"l{offset + 1}"
            self._ip(["link", "add", "eth0", "netns", netns, "type", "veth",
                      "peer", "name", port, "netns", router.netns])
            self._ns_script(router.netns, _up_script([port]) + [f"ip link set {port} master lan0"])
            ip = str(addresses[offset])
            self._ns_script(netns, _up_script(["eth0"]) + [
                f"ip addr add {ip}/{network.prefixlen} dev eth0",
                "ip link set lo up",
                f"ip route add default via {gateway}",
            ])
            host = Host(name, netns, ip)
            self.hosts[name] = host
            hosts.append(host)
        return hosts

    def set_profile(self, host: Host | str, profile: Profile) -> None:
        """Change a link's profile now (its schedule restarts at 0 s)."""
        self._control({"op": "set", "link": self._linked(host).name, "profile": profile.to_dict()})

    def cut(self, host: Host | str, seconds: float | None = None) -> None:
        """Cut a link both ways, for seconds or until restore()."""
        self._control({"op": "cut", "link": self._linked(host).name, "seconds": seconds})

    def restore(self, host: Host | str) -> None:
        """End a cut made with cut()."""
        self._control({"op": "restore", "link": self._linked(host).name})

    def stats(self) -> dict[str, Any]:
        """The emulator's counters per link, its lateness and its CPU seconds."""
        if self._emulator is None:
            return {"cpu_s": 0.0, "links": {}}
        return self._control({"op": "stats"})

    @property
    def emulator_pid(self) -> int | None:
        """The forwarder's process id, once a linked host exists."""
        return None if self._emulator is None else self._emulator.pid

    @property
    def namespaces(self) -> list[str]:
        """Every namespace this lab made."""
        return list(self._namespaces)

    # -- running things in hosts ---------------------------------------------------------

    def run(self, host: Host, argv: list[str], timeout: float = 60.0,
            **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run a command inside host's namespace and wait for it (output captured as text)."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self._in(host, argv), timeout=timeout, **kwargs)

    def popen(self, host: Host, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a command inside host's namespace; the lab stops it on close."""
        proc = subprocess.Popen(self._in(host, argv), start_new_session=True, **kwargs)
        self._procs.append(proc)
        return proc

    def python(self, host: Host, code: str, *args: str, **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `python -c code args...` (this interpreter) inside host's namespace."""
        return self.popen(host, [sys.executable, "-c", code, *args], **kwargs)

    def python_module(self, host: Host, module: str, *args: str,
                      **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `python -m module args...` inside host's namespace, from the checkout's root
        (the harness is not installed, so that is where `python -m harness....` finds it)."""
        kwargs.setdefault("cwd", CHECKOUT)
        return self.popen(host, [sys.executable, "-m", module, *args], **kwargs)

    # -- internals -----------------------------------------------------------------------

    def _in(self, host: Host, argv: list[str]) -> list[str]:
        if self._closed:
            raise RuntimeError("the lab is closed")
        return ["ip", "netns", "exec", host.netns, *argv]

    def _linked(self, host: Host | str) -> Host:
        found = self.hosts.get(host if isinstance(host, str) else host.name)
        if found is None or found.link is None:
            raise ValueError(f"{host!r} is not a host with an emulated link in this lab")
        return found

    def _add_namespace(self, role: str, unavailable_on_failure: bool = False) -> str:
        netns = f"{self.prefix}-{role}"
        done = subprocess.run(["ip", "netns", "add", netns], capture_output=True, text=True,
                              timeout=10)
        if done.returncode != 0:
            reason = done.stderr.strip() or f"exit {done.returncode}"
            if unavailable_on_failure:
                raise LabUnavailable(f"cannot create network namespaces: {reason}")
            raise RuntimeError(f"ip netns add {netns}: {reason}")
        self._namespaces.append(netns)
        # No IPv6: its router and neighbour chatter would cross the emulated links too.
        self._ns_script(netns, ["sysctl -qw net.ipv6.conf.all.disable_ipv6=1",
                                "sysctl -qw net.ipv6.conf.default.disable_ipv6=1"])
        return netns

    def _wan(self) -> str:
        if self._emulator is None:
            self._wan_ns = self._add_namespace("wan")
            assert self._workdir is not None
            self._control_path = str(self._workdir / "emulator.sock")
            log = open(self._workdir / "emulator.log", "wb")
            self._emulator = subprocess.Popen(
                ["ip", "netns", "exec", self._wan_ns, sys.executable, "-m",
                 "harness.emulator", "--control", self._control_path,
                 "--parent-pid", str(os.getpid())],
                stdout=log, stderr=log, start_new_session=True, cwd=CHECKOUT,
            )
            log.close()
            deadline = time.monotonic() + 10.0
            while not os.path.exists(self._control_path):
                if self._emulator.poll() is not None or time.monotonic() > deadline:
                    output = (self._workdir / "emulator.log").read_text(errors="replace")
                    raise RuntimeError(f"link emulator did not start: {output[-500:]}")
                time.sleep(0.02)
        return self._wan_ns

    def _control(self, message: dict[str, Any]) -> dict[str, Any]:
        if self._emulator is None:
            raise RuntimeError("no emulated link in this lab yet")
        return control.request(self._control_path, message)

    def _ip(self, args: list[str]) -> None:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")

    def _ns_script(self, netns: str, commands: list[str]) -> None:
        script = "set -e\n" + "\n".join(commands)
        done = subprocess.run(["ip", "netns", "exec", netns, "sh", "-c", script],
                              capture_output=True, text=True, timeout=20)
        if done.returncode != 0:
            raise RuntimeError(f"setting up {netns} failed: {done.stderr.strip()[-300:]}")

    def _install_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self._previous_sigterm = signal.SIG_DFL
            signal.signal(signal.SIGTERM, _sigterm_to_exit)

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm is None or _open_labs:
            return
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous_sigterm)


def _up_script(ifaces: list[str], promisc: bool = False) -> list[str]:
    """Offloads off (or the forwarder sees unchecksummed, oversized frames), then up."""
    lines = []
    for iface in ifaces:
        lines.append(f"ethtool -K {iface} {' '.join(_OFFLOADS)} >/dev/null")
        lines.append(f"ip link set {iface} up" + (" promisc on" if promisc else ""))
    return lines


def _sigterm_to_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _stop_group(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the process group, then SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@atexit.register
def _close_open_labs() -> None:
    for lab in list(_open_labs):
        lab.close()
