"""A worker cannot signal the harness (Linux, x86-64 and arm64).

A worker runs as the same user as the harness, and any process may signal
another of its user's: a plug-in's ``os.kill(os.getppid(), signal.SIGHUP)``
ended the whole sweep at once, with no word of why (SIGTERM and SIGINT
stopped it as an interrupt). :func:`fence_off` installs a seccomp filter in
the worker, inherited by every process it starts and never removed, under
which the system calls that send a signal (``kill``, ``tgkill``,
``rt_sigqueueinfo``, ``rt_tgsigqueueinfo``, ``pidfd_open``) fail with EPERM
when they aim at the harness: its process id (its main thread's id), its
process group (a negative id) or every process at once (-1), and so do
``ptrace`` and ``process_vm_readv``/``writev`` of the harness. ``tkill``,
which names a thread alone (glibc has not used it for a decade),
``pidfd_send_signal`` (whose pidfd may be an open ``/proc/<pid>``
directory), ``pidfd_getfd`` and x86-64's x32 system calls always fail.
Everything else, signals to the worker's own processes included, is
allowed. Not stopped: a signal to another process of the run (another
implementation's worker), and writes through ``/proc/<harness>/mem`` where
the user may trace the harness (a path, which seccomp cannot see).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
# BPF: ld [k] (word, absolute), jeq #k, jge #k, ret #k
LD, JEQ, JGE, RET = 0x20, 0x15, 0x35, 0x06
# seccomp_data: nr at 0, arch at 4, args[i] at 16 + 8 i (their low 32 bits
# first: the kernel reads an int argument, a pid, from those alone)
NR, ARCH = 0, 4
# per machine: the audit arch; the system calls that aim at a process, each
# with the argument that names it; and the calls refused whatever they aim
# at: tkill, pidfd_send_signal (its pidfd may be an open /proc/<pid>
# directory) and pidfd_getfd (a copy of another process's descriptor)
SYSCALLS = {
    "x86_64": (0xC000003E, {"kill": (62, 0), "tgkill": (234, 0), "rt_sigqueueinfo": (129, 0),
                            "rt_tgsigqueueinfo": (297, 0), "pidfd_open": (434, 0),
                            "ptrace": (101, 1), "process_vm_readv": (310, 0),
                            "process_vm_writev": (311, 0)}, (200, 424, 438)),
    "aarch64": (0xC00000B7, {"kill": (129, 0), "tgkill": (131, 0), "rt_sigqueueinfo": (138, 0),
                             "rt_tgsigqueueinfo": (240, 0), "pidfd_open": (434, 0),
                             "ptrace": (117, 1), "process_vm_readv": (270, 0),
                             "process_vm_writev": (271, 0)}, (130, 424, 438)),
}
X32 = 0x40000000  # x86-64's x32 system calls share its arch: all refused


def _instruction(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


def _program(harness: int, group: int, machine: str) -> list[bytes]:
    """The filter: for each aiming system call, its argument against the
    harness's id, its group's (negated) and -1; the others refused outright."""
    arch, aiming, refused = SYSCALLS[machine]
    deny = _instruction(RET, SECCOMP_RET_ERRNO | errno.EPERM)
    allow = _instruction(RET, SECCOMP_RET_ALLOW)
    targets = sorted({harness, -group, -1})
    program = [_instruction(LD, ARCH), _instruction(JEQ, arch, 1, 0), allow,
               _instruction(LD, NR), _instruction(JGE, X32, 0, 1), deny]
    for number in refused:
        program += [_instruction(JEQ, number, 0, 1), deny]
    for number, argument in aiming.values():
        # if nr == number: load the argument, deny if it aims at the harness, else allow
        checks = [_instruction(LD, 16 + 8 * argument)]
        for k, target in enumerate(targets):
            checks.append(_instruction(JEQ, target, len(targets) - k, 0))
        checks += [allow, deny]
        program += [_instruction(LD, NR), _instruction(JEQ, number, 0, len(checks))] + checks
    return program + [allow]


def fence_off(harness: int) -> bool:
    """In a worker: the system calls that could signal (or trace) the process
    ``harness``, its process group or every process fail from now on, here
    and in every process started from here; whether the filter is in place
    (False off Linux, on another machine, or where seccomp is not allowed:
    the worker then runs as before)."""
    machine = platform.machine()
    if machine not in SYSCALLS:
        return False
    try:
        program = b"".join(_program(harness, os.getpgid(harness), machine))
        buffer = ctypes.create_string_buffer(program, len(program))

        class Program(ctypes.Structure):  # struct sock_fprog
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
        prog = Program(len(program) // 8, ctypes.addressof(buffer))
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                          ctypes.c_ulong]
        return (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
                and prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0) == 0)
    except Exception:  # noqa: BLE001 - no filter is no reason to lose the worker
        return False
