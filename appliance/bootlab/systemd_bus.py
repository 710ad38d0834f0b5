"""Unit state straight from systemd over its private D-Bus socket, through libsystemd's
sd-bus: a status read then costs a round trip of microseconds, not a systemctl process.
Starting and stopping queue a job (StartUnit/StopUnit, like `systemctl --no-block`) and
answer its id at once: a unit may take as long as its own timeouts allow, and whoever asked
watches the unit's job and state, not a connection held open for minutes."""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from typing import Any

from bootlab.errors import Exit, die

PRIVATE_SOCKET = b"unix:path=/run/systemd/private"  # what systemctl uses as root
_SYSTEMD = b"org.freedesktop.systemd1"
_UNIT = b"org.freedesktop.systemd1.Unit"
_SERVICE = b"org.freedesktop.systemd1.Service"


class _BusError(ctypes.Structure):
    _fields_ = (
        ("name", ctypes.c_char_p),
        ("message", ctypes.c_char_p),
        ("_need_free", ctypes.c_int),
    )


@dataclass(frozen=True)
class UnitState:
    unit: str
    active: str  # systemd's ActiveState: active, inactive, failed, activating, deactivating
    sub: str
    main_pid: int
    result: str  # success, exit-code, start-limit-hit, ... (why it last stopped)
    since_us: int  # when it entered its current state, µs since the epoch (0: never)
    active_enter_us: int = 0  # when it last became active (Type=notify: READY), 0: never
    status: str = ""  # what the service says of itself (sd_notify STATUS=), "" if nothing
    job: int = 0  # the job queued or running for it (a start, a stop), 0 when none


def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL("libsystemd.so.0", use_errno=True)
    pointer = ctypes.c_void_p
    text = ctypes.c_char_p
    error = ctypes.POINTER(_BusError)
    lib.sd_bus_new.argtypes = [ctypes.POINTER(pointer)]
    lib.sd_bus_set_address.argtypes = [pointer, text]
    lib.sd_bus_start.argtypes = [pointer]
    lib.sd_bus_flush_close_unref.argtypes = [pointer]
    lib.sd_bus_flush_close_unref.restype = pointer
    lib.sd_bus_path_encode.argtypes = [text, text, ctypes.POINTER(pointer)]
    # (bus, destination, path, interface, member, error, ...): the head of every call below.
    call: list[Any] = [pointer, text, text, text, text, error]
    # The string out-parameter is malloc'd: taken as a void pointer so we can free it.
    lib.sd_bus_get_property_string.argtypes = [*call, ctypes.POINTER(pointer)]
    lib.sd_bus_get_property_trivial.argtypes = [*call, ctypes.c_char, pointer]
    lib.sd_bus_error_free.argtypes = [error]
    # Variadic after the signature: the one argument (a unit name) goes as bytes, a char*.
    lib.sd_bus_call_method.argtypes = [*call, ctypes.POINTER(pointer), text]
    lib.sd_bus_message_unref.argtypes = [pointer]
    lib.sd_bus_message_unref.restype = pointer
    # A property of any type, as a message to read; then read with its signature (variadic
    # after it: pointers to the values, which live as long as the message).
    lib.sd_bus_get_property.argtypes = [*call, ctypes.POINTER(pointer), text]
    lib.sd_bus_message_read.argtypes = [pointer, text]
    return lib


class Systemd:
    """One connection, shared by the daemon's threads (sd-bus objects are not thread-safe,
    so calls take turns), reopened when systemd restarts or the connection drops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bus: ctypes.c_void_p | None = None
        self._lib: ctypes.CDLL | None = None
        self._libc = ctypes.CDLL(None)
        self._libc.free.argtypes = [ctypes.c_void_p]

    def unit(self, name: str) -> UnitState:
        with self._lock:
            try:
                return self._read(name)
            except OSError:
                self._close()  # one retry on a fresh connection (systemd re-executed, say)
                return self._read(name)

    def start(self, name: str) -> int:
        """Queue a start job (mode replace, as systemctl's default) and return its id."""
        return self._job(b"StartUnit", name)

    def stop(self, name: str) -> int:
        return self._job(b"StopUnit", name)

    def _job(self, method: bytes, name: str) -> int:
        with self._lock:
            try:
                return self._enqueue(method, name)
            except OSError:
                # Queuing twice is harmless: a job of the same type on the same unit merges.
                self._close()
                return self._enqueue(method, name)

    def _enqueue(self, method: bytes, name: str) -> int:
        bus = self._connect()
        assert self._lib is not None
        error = _BusError()
        reply = ctypes.c_void_p()
        result = self._manager(bus, method, error, reply, b"ss", name.encode(), b"replace")
        try:
            action = "start" if method == b"StartUnit" else "stop"
            self._raise_bus_error(result, error, method, refused=f"cannot {action} {name}")
            job_path = ctypes.c_char_p()
            self._check(
                self._lib.sd_bus_message_read(reply, b"o", ctypes.byref(job_path)),
                "reading the job of " + method.decode(),
            )
            return _job_id(job_path.value or b"")
        finally:
            self._lib.sd_bus_message_unref(reply)

    def _connect(self) -> ctypes.c_void_p:
        if self._bus is not None:
            return self._bus
        if self._lib is None:
            try:
                self._lib = _library()
            except OSError:
                raise die(
                    "libsystemd is not installed", hint="bootlab needs systemd's libsystemd0"
                ) from None
        bus = ctypes.c_void_p()
        self._check(self._lib.sd_bus_new(ctypes.byref(bus)), "sd_bus_new")
        for call, argument in (
            (self._lib.sd_bus_set_address, PRIVATE_SOCKET),
            (self._lib.sd_bus_start, None),
        ):
            result = call(bus, argument) if argument else call(bus)
            if result < 0:
                self._lib.sd_bus_flush_close_unref(bus)
                raise die(
                    f"cannot reach systemd at {PRIVATE_SOCKET.decode()}: errno {-result}",
                    hint="bootlab runs on a machine booted with systemd, as root",
                )
        self._bus = bus
        return bus

    def _close(self) -> None:
        if self._bus is not None and self._lib is not None:
            self._lib.sd_bus_flush_close_unref(self._bus)
        self._bus = None

    def _read(self, name: str) -> UnitState:
        bus = self._connect()
        assert self._lib is not None
        if not self._loaded(bus, name):
            # Reading a property would load the unit from disk, and systemd would unload it
            # again right after: milliseconds per read. An unloaded unit is simply inactive
            # (a failed one stays loaded until reset).
            return UnitState(name, "inactive", "dead", 0, "success", 0)
        encoded = ctypes.c_void_p()
        self._check(
            self._lib.sd_bus_path_encode(
                b"/org/freedesktop/systemd1/unit", name.encode(), ctypes.byref(encoded)
            ),
            "sd_bus_path_encode",
        )
        try:
            path = ctypes.string_at(encoded.value) if encoded.value else b""
        finally:
            self._libc.free(encoded)
        return UnitState(
            unit=name,
            active=self._string(bus, path, _UNIT, b"ActiveState"),
            sub=self._string(bus, path, _UNIT, b"SubState"),
            result=self._string(bus, path, _SERVICE, b"Result"),
            main_pid=self._trivial(bus, path, _SERVICE, b"MainPID", kind=b"u"),
            since_us=self._trivial(bus, path, _UNIT, b"StateChangeTimestamp", kind=b"t"),
            active_enter_us=self._trivial(bus, path, _UNIT, b"ActiveEnterTimestamp", kind=b"t"),
            status=self._string(bus, path, _SERVICE, b"StatusText"),
            job=self._pending_job(bus, path),
        )

    def _pending_job(self, bus: ctypes.c_void_p, path: bytes) -> int:
        """The unit's Job property, a (id, object path) pair: (0, "/") when none."""
        assert self._lib is not None
        error = _BusError()
        reply = ctypes.c_void_p()
        result = self._lib.sd_bus_get_property(
            bus, _SYSTEMD, path, _UNIT, b"Job", ctypes.byref(error), ctypes.byref(reply), b"(uo)"
        )
        try:
            self._raise_bus_error(result, error, b"Job")
            job_id = ctypes.c_uint32()
            job_path = ctypes.c_char_p()
            self._check(
                self._lib.sd_bus_message_read(
                    reply, b"(uo)", ctypes.byref(job_id), ctypes.byref(job_path)
                ),
                "reading the unit's Job",
            )
            return int(job_id.value)
        finally:
            self._lib.sd_bus_message_unref(reply)

    def _manager(
        self,
        bus: ctypes.c_void_p,
        method: bytes,
        error: _BusError,
        reply: ctypes.c_void_p,
        signature: bytes,
        *arguments: bytes,
    ) -> int:
        """Call a method of systemd's Manager object; the reply is the caller's to free."""
        assert self._lib is not None
        return int(
            self._lib.sd_bus_call_method(
                bus,
                _SYSTEMD,
                b"/org/freedesktop/systemd1",
                b"org.freedesktop.systemd1.Manager",
                method,
                ctypes.byref(error),
                ctypes.byref(reply),
                signature,
                *arguments,
            )
        )

    def _loaded(self, bus: ctypes.c_void_p, name: str) -> bool:
        """Manager.GetUnit answers NoSuchUnit for a unit systemd has not loaded."""
        assert self._lib is not None
        error = _BusError()
        reply = ctypes.c_void_p()
        result = self._manager(bus, b"GetUnit", error, reply, b"s", name.encode())
        self._lib.sd_bus_message_unref(reply)
        if result < 0 and error.name == b"org.freedesktop.systemd1.NoSuchUnit":
            self._lib.sd_bus_error_free(ctypes.byref(error))
            return False
        self._raise_bus_error(result, error, b"GetUnit")
        return True

    def _string(self, bus: ctypes.c_void_p, path: bytes, interface: bytes, member: bytes) -> str:
        assert self._lib is not None
        error = _BusError()
        value = ctypes.c_void_p()
        result = self._lib.sd_bus_get_property_string(
            bus, _SYSTEMD, path, interface, member, ctypes.byref(error), ctypes.byref(value)
        )
        self._raise_bus_error(result, error, member)
        try:
            return ctypes.string_at(value.value).decode() if value.value else ""
        finally:
            self._libc.free(value)

    def _trivial(
        self,
        bus: ctypes.c_void_p,
        path: bytes,
        interface: bytes,
        member: bytes,
        *,
        kind: bytes,
    ) -> int:
        assert self._lib is not None
        value = ctypes.c_uint32() if kind == b"u" else ctypes.c_uint64()
        error = _BusError()
        result = self._lib.sd_bus_get_property_trivial(
            bus, _SYSTEMD, path, interface, member, ctypes.byref(error), kind, ctypes.byref(value)
        )
        self._raise_bus_error(result, error, member)
        return int(value.value)

    def _raise_bus_error(
        self, result: int, error: _BusError, member: bytes, refused: str | None = None
    ) -> None:
        if result >= 0:
            return
        assert self._lib is not None
        detail = (error.message or b"").decode(errors="replace")
        self._lib.sd_bus_error_free(ctypes.byref(error))
        # A broken connection is an OSError, retried once; a refusal is an answer.
        if -result in (32, 104, 107):  # EPIPE, ECONNRESET, ENOTCONN
            raise OSError(-result, detail)
        reason = detail or f"errno {-result}"
        if refused is not None:  # systemd's own words: masked, not found, a bad transaction
            raise die(
                f"{refused}: {reason}",
                hint="see systemctl status " + refused.rsplit(" ", 1)[-1],
                exit_code=Exit.CONFLICT,
            )
        raise die(f"systemd did not answer {member.decode()}: {reason}")

    def _check(self, result: int, what: str) -> None:
        if result < 0:
            raise die(f"{what} failed: errno {-result}")


def _job_id(path: bytes) -> int:
    """/org/freedesktop/systemd1/job/1234 → 1234."""
    _, _, number = path.decode().rpartition("/")
    return int(number) if number.isdigit() else 0
