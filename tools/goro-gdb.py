# tools/goro-gdb.py — gdb support for goro's fibers, like Go's runtime-gdb.py.
#
# Load it into gdb (it needs nothing beyond gdb's own Python):
#
#   (gdb) source tools/goro-gdb.py          or, in ~/.gdbinit:  source /path/to/goro-gdb.py
#
# Commands (a fiber ID is a number or any gdb expression without spaces, e.g. a
# variable holding it):
#
#   goro fibers            one line per started fiber: its id, its state (for a
#                          parked fiber, what it waits on and the object's
#                          address), "(main)" for the main fiber, and where it
#                          was spawned (file:line function). `info fibers` is
#                          the same.
#   goro bt ID [OPTIONS]   the backtrace of fiber ID; OPTIONS go to `bt` (e.g.
#                          `full`, `-5`). `goro bt all` shows every fiber's.
#   goro apply ID COMMAND  runs any gdb COMMAND (`info frame`, `frame 3`,
#                          `info locals`...) with the registers of fiber ID.
#
# How a parked fiber's backtrace is found. A fiber that is not running saved
# its callee-saved registers on its own stack when it switched away
# (boost::context's jump_fcontext) and left the address of that save area in
# fiber::ctx. On x86-64 (Boost 1.74, checked against jump_fcontext's
# disassembly) the area is:
#
#   ctx+0x00  MXCSR and x87 control word     ctx+0x28  rbx
#   ctx+0x08  r12                            ctx+0x30  rbp
#   ctx+0x10  r13                            ctx+0x38  return address (rip)
#   ctx+0x18  r14                            ctx+0x40  rsp once jump_fcontext returns
#   ctx+0x20  r15
#
# Like runtime-gdb.py does for goroutines, the commands temporarily load
# those values into the registers of the selected thread (in frame 0), run
# the gdb command, and then put every register back. The fiber's frame 0 is
# thus the function that called jump_fcontext, just after the call. That
# needs a live process (stopped, e.g. at a breakpoint). A core file's
# registers cannot be written: there a Python unwinder presents the saved
# registers as those of the caller of the thread's innermost frame, which a
# frame filter hides, so the fiber's frames are numbered from #1.
#
# A running fiber's stack is its worker thread's: the commands say which gdb
# thread that is and run the command there (`thread apply N bt`).
#
# The runtime's records are read through the debug information of libgoro
# (goro::detail::g_sched and the structures in src/sched/sched.hpp), so the
# library must be built with -g (the default buildtypes debug and
# debugoptimized are).

import struct

import gdb
import gdb.unwinder

# fiber::state values (enum class fiber_state in src/sched/sched.hpp).
STATE_NAMES = {0: "runnable", 1: "running", 2: "parked", 3: "dead"}
RUNNING = 1
PARKED = 2
DEAD = 3

# The fcontext save area (see above): offsets of the saved registers, and
# the stack pointer the fiber will have once jump_fcontext returns.
FCONTEXT_SAVED = (
    ("r12", 0x08),
    ("r13", 0x10),
    ("r14", 0x18),
    ("r15", 0x20),
    ("rbx", 0x28),
    ("rbp", 0x30),
    ("rip", 0x38),
)
FCONTEXT_SP_OFFSET = 0x40
FCONTEXT_SIZE = 0x40

# Registers the commands overwrite and restore. rsp before rip: gdb computes
# frames from both, and this order matches runtime-gdb.py's.
SWAPPED_REGISTERS = ("rsp", "rip", "rbp", "rbx", "r12", "r13", "r14", "r15")

# A registry list longer than this is taken to be corrupt (a cycle or a
# dangling pointer in a core file of a crashed program).
MAX_FIBERS = 10_000_000


class GoroError(Exception):
    """A problem to report to the user as a plain message, not a traceback."""


# ---------------------------------------------------------------------------
# Reading the inferior's data structures.


def plain(value):
    """`value` itself, or what it holds if it is a std::atomic."""
    name = str(value.type.strip_typedefs())
    return atomic_load(value) if name.startswith("std::atomic<") else value


def atomic_load(value):
    """The value held by a libstdc++ std::atomic<T> (read as a plain load).

    std::atomic<integral> keeps it in __atomic_base<T>::_M_i, std::atomic<T*>
    in _M_b._M_p, and the generic std::atomic<T> (enums) in _M_i; the search
    below walks base classes and those members until it finds one.
    """
    for _ in range(4):
        fields = {f.name: f for f in value.type.strip_typedefs().fields()}
        if "_M_i" in fields:
            return value["_M_i"]
        if "_M_p" in fields:
            return value["_M_p"]
        if "_M_b" in fields:
            value = value["_M_b"]
            continue
        bases = [f for f in fields.values() if f.is_base_class]
        if not bases:
            break
        value = value.cast(bases[0].type)
    raise GoroError("cannot read a std::atomic of type %s" % value.type)


def vector_items(value):
    """The elements of a libstdc++ std::vector, without pretty-printers."""
    impl = value["_M_impl"]
    begin, end = impl["_M_start"], impl["_M_finish"]
    count = int(end - begin)
    if count < 0 or count > 1_000_000:
        raise GoroError("implausible std::vector size %d (corrupt runtime state?)" % count)
    return [(begin + i).dereference() for i in range(count)]


def c_string(ptr):
    """A const char* as a Python str, or None if it is null or unreadable."""
    if int(ptr) == 0:
        return None
    try:
        return ptr.string(errors="replace")
    except gdb.MemoryError:
        return "<unreadable %#x>" % int(ptr)


def running_scheduler():
    """The goro::detail::sched* of the running runtime.

    Raises GoroError("no goro runtime is running") when there is no process
    or core file, when libgoro (or its debug information) is not loaded, or
    when g_sched is null (run() not called yet, or already returned).
    """
    if not gdb.selected_inferior().pid:
        raise GoroError("no goro runtime is running (the program is not running)")
    try:
        sched = atomic_load(gdb.parse_and_eval("goro::detail::g_sched"))
    except gdb.error as exc:
        raise GoroError(
            "no goro runtime is running (cannot read goro::detail::g_sched: %s; "
            "is libgoro loaded, with debug information?)" % str(exc).rstrip(".")
        )
    if int(sched) == 0:
        raise GoroError("no goro runtime is running")
    return sched


class Fiber:
    """A snapshot of one goro::detail::fiber record."""

    def __init__(self, ptr):
        f = ptr.dereference()
        self.address = int(ptr)
        self.id = int(f["id"])
        self.state = int(atomic_load(f["state"]))
        self.is_main = bool(f["is_main"])
        self.ctx = int(f["ctx"])
        self.wait_reason = c_string(plain(f["wait_reason"]))
        self.wait_obj = int(plain(f["wait_obj"]))
        self.spawn_file, self.spawn_line, self.spawn_function = None, 0, None
        # std::source_location holds one pointer to a static __impl record
        # (file, function, line, column); null when nothing was recorded.
        impl = f["spawned_at"]["_M_impl"]
        if int(impl) != 0:
            self.spawn_file = c_string(impl["_M_file_name"])
            self.spawn_function = c_string(impl["_M_function_name"])
            self.spawn_line = int(impl["_M_line"])

    def state_text(self):
        """'running', 'runnable', 'dead' or, when parked, what it waits on."""
        if self.state == PARKED:
            text = self.wait_reason or "parked"
            if self.wait_obj:
                text += " %#x" % self.wait_obj
            return text
        return STATE_NAMES.get(self.state, "state %d?" % self.state)

    def spawn_text(self):
        if self.is_main:
            return "started by goro::run"
        if self.spawn_line == 0:
            return "spawn site not recorded"
        return "spawned at %s:%d in %s" % (self.spawn_file, self.spawn_line, self.spawn_function)


def all_fibers(sched):
    """Every started fiber, from each processor's registry list.

    Fibers that were spawned but never ran are only in run queues and not
    listed (their number is in unstarted_count()), as in goro::dump().
    """
    fibers = []
    seen = set()
    for p in vector_items(sched["ps"]):
        if int(p) == 0:
            continue
        f = p["reg_head"]
        while int(f) != 0:
            if int(f) in seen or len(seen) >= MAX_FIBERS:
                raise GoroError("the fiber registry of P %d is corrupt (a cycle?)" % int(p["id"]))
            seen.add(int(f))
            fibers.append(Fiber(f))
            f = f["reg_next"]
    return fibers


def unstarted_count(sched, listed):
    """Fibers spawned but not started yet: live_fibers() minus those listed."""
    live = int(atomic_load(sched["external_live"]))
    for p in vector_items(sched["ps"]):
        if int(p) != 0:
            live += int(atomic_load(p["live"]))
    return max(0, live - listed)


def find_fiber(sched, fiber_id):
    for f in all_fibers(sched):
        if f.id == fiber_id:
            return f
    raise GoroError("no started fiber has id %d (see `goro fibers`)" % fiber_id)


def worker_threads(sched):
    """{fiber address: gdb.InferiorThread} for the fibers workers are running.

    A worker (regular or spare) runs worker::current on its OS thread, whose
    kernel id is worker::tid; gdb knows that thread by the same LWP.
    """
    by_lwp = {t.ptid[1]: t for t in gdb.selected_inferior().threads()}
    running = {}
    workers = vector_items(sched["ws"]) + vector_items(sched["spares"])
    for w in workers:
        if int(w) == 0:
            continue
        current = int(w["current"])
        thread = by_lwp.get(int(atomic_load(w["tid"])))
        if current != 0 and thread is not None:
            running[current] = thread
    return running


def parse_fiber_id(arg):
    """A fiber id from a gdb expression: `5`, `$1`, `g_recv_fiber`..."""
    if not arg:
        raise GoroError("a fiber id is required (see `goro fibers`)")
    try:
        return int(gdb.parse_and_eval(arg))
    except gdb.error as exc:
        raise GoroError("bad fiber id %r: %s" % (arg, exc))


# ---------------------------------------------------------------------------
# Running a command "on" a fiber's stack.


def check_architecture():
    arch = gdb.selected_inferior().architecture().name()
    if arch != "i386:x86-64":
        raise GoroError("goro-gdb.py reads fiber contexts on x86-64 only, not on %s" % arch)


def saved_registers(fiber):
    """The register values a parked or runnable fiber resumes with."""
    try:
        raw = bytes(gdb.selected_inferior().read_memory(fiber.ctx, FCONTEXT_SIZE))
    except gdb.MemoryError:
        raise GoroError("fiber %d: cannot read its saved context at %#x" % (fiber.id, fiber.ctx))
    words = struct.unpack("<8Q", raw)
    regs = {name: words[offset // 8] for name, offset in FCONTEXT_SAVED}
    regs["rsp"] = fiber.ctx + FCONTEXT_SP_OFFSET
    return regs


def set_registers(values):
    """Writes registers of the selected thread; gdb wants frame 0 selected."""
    gdb.execute("select-frame 0", to_string=True)
    for name in SWAPPED_REGISTERS:
        gdb.execute("set var $%s = %#x" % (name, values[name]), to_string=True)


def registers_writable():
    """False when the target cannot change registers (a core file)."""
    # Writing a register its own value is skipped by gdb, so write another.
    gdb.execute("select-frame 0", to_string=True)
    rsp = int(gdb.newest_frame().read_register("rsp"))
    try:
        gdb.execute("set var $rsp = %#x" % (rsp ^ 8), to_string=True)
    except gdb.error:
        return False  # gdb has dropped the value it could not store
    gdb.execute("set var $rsp = %#x" % rsp, to_string=True)
    return True


def run_with_registers(regs, command):
    """Runs a gdb command with the selected thread's registers set to `regs`.

    Every overwritten register is restored afterwards, even if the command
    fails or is interrupted.
    """
    newest = gdb.newest_frame()
    saved = {name: int(newest.read_register(name)) & 0xFFFFFFFFFFFFFFFF
             for name in SWAPPED_REGISTERS}
    try:
        set_registers(regs)
        gdb.execute(command)
    finally:
        set_registers(saved)


# Where registers cannot be written (a core file), the fiber's frames are
# shown as the callers of the thread's innermost frame instead: while a
# command runs, a Python unwinder says that frame's caller has the fiber's
# saved registers, and a frame filter hides the thread's own frame from `bt`.
# The fiber's innermost frame is then #1 rather than #0.


class FrameId:
    """The frame id a Python unwinder gives the frame it unwinds."""

    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


class FiberUnwinder(gdb.unwinder.Unwinder):
    """Unwinds frame `level` of thread `ptid` into a fiber's saved registers."""

    def __init__(self):
        super().__init__("goro-fiber")
        self.regs = None  # set only while a command runs
        self.level = 0
        self.ptid = None

    def __call__(self, pending_frame):
        if self.regs is None or pending_frame.level() != self.level:
            return None
        thread = gdb.selected_thread()
        if thread is None or thread.ptid != self.ptid:
            return None
        u64 = pending_frame.architecture().integer_type(64, False)
        # gdb takes only gdb.Values here. The frame's id must be inner to
        # (below) the fiber's frames: the save area's address is.
        sp = gdb.Value(self.regs["rsp"] - FCONTEXT_SP_OFFSET).cast(u64)
        info = pending_frame.create_unwind_info(FrameId(sp, pending_frame.read_register("rip")))
        for name in SWAPPED_REGISTERS:
            info.add_saved_register(name, gdb.Value(self.regs[name]).cast(u64))
        return info


class HideThreadFrames:
    """A frame filter hiding the thread's frames under the fiber's (see above)."""

    def __init__(self):
        self.name = "goro-fiber"
        self.priority = 100
        self.enabled = True
        self.hide_up_to = 0  # the level of the last hidden frame

    def filter(self, frames):
        return (f for f in frames if f.inferior_frame().level() > self.hide_up_to)


# The unwinder stays registered (it declines every frame when idle); the
# frame filter is registered only while a command runs, since any frame
# filter changes how gdb prints every backtrace.
FIBER_UNWINDER = FiberUnwinder()
gdb.unwinder.register_unwinder(None, FIBER_UNWINDER, replace=True)
HIDE_THREAD_FRAMES = HideThreadFrames()


def flush_frames():
    """Makes gdb rebuild its frames, asking the unwinders again.

    gdb.invalidate_cached_frames() is not enough: gdb 13 keeps the innermost
    frame's unwinder. Flushing the register cache drops everything.
    """
    try:
        gdb.execute("maintenance flush register-cache", to_string=True)
    except gdb.error:
        gdb.execute("flushregs", to_string=True)  # gdb before 12


def run_as_callers(regs, command):
    """Runs a gdb command with the fiber's frames as callers of the thread's."""
    # gdb shows inline frames above the real innermost frame, which the
    # unwinder sees as the first non-inline level.
    level = 0
    frame = gdb.newest_frame()
    while frame.type() == gdb.INLINE_FRAME and frame.older() is not None:
        frame = frame.older()
        level += 1
    FIBER_UNWINDER.regs = regs
    FIBER_UNWINDER.level = level
    FIBER_UNWINDER.ptid = gdb.selected_thread().ptid
    HIDE_THREAD_FRAMES.hide_up_to = level
    gdb.frame_filters[HIDE_THREAD_FRAMES.name] = HIDE_THREAD_FRAMES
    flush_frames()
    try:
        print(
            "(registers cannot be changed here, e.g. in a core file: the fiber's frames "
            "are numbered from #%d)" % (level + 1)
        )
        gdb.execute("select-frame %d" % (level + 1), to_string=True)
        gdb.execute(command)
    finally:
        FIBER_UNWINDER.regs = None
        HIDE_THREAD_FRAMES.hide_up_to = 0
        gdb.frame_filters.pop(HIDE_THREAD_FRAMES.name, None)
        flush_frames()


def run_on_saved_context(fiber, command):
    """Runs a gdb command on the stack of a fiber that is not running."""
    check_architecture()
    regs = saved_registers(fiber)
    thread = gdb.selected_thread()
    if thread is None:
        raise GoroError("no thread is selected")
    if not thread.is_stopped():
        raise GoroError("the selected thread must be stopped (all-stop mode, or `interrupt`)")
    saved_frame = gdb.selected_frame()
    try:
        if registers_writable():
            run_with_registers(regs, command)
        else:
            run_as_callers(regs, command)
    finally:
        try:
            saved_frame.select()
        except (gdb.error, RuntimeError):
            gdb.execute("select-frame 0", to_string=True)  # that frame is gone


def apply_to_fiber(sched, fiber, command, running_threads=None):
    """Runs `command` as if `fiber` were the current context."""
    if running_threads is None:
        running_threads = worker_threads(sched)
    if fiber.state == RUNNING:
        thread = running_threads.get(fiber.address)
        if thread is None:
            print(
                "fiber %d is running on a worker thread that gdb does not show; "
                "use `info threads` and `thread apply N %s`" % (fiber.id, command)
            )
            return
        print(
            "fiber %d is running on worker thread %d (LWP %d): its stack is that thread's "
            "(`thread %d`, then `%s`)" % (fiber.id, thread.num, thread.ptid[1], thread.num, command)
        )
        gdb.execute("thread apply %d %s" % (thread.num, command))
        return
    if fiber.state == DEAD:
        print("fiber %d is dead: it has no stack any more" % fiber.id)
        return
    if fiber.ctx == 0:
        print("fiber %d has not started yet: it has no stack" % fiber.id)
        return
    run_on_saved_context(fiber, command)


# ---------------------------------------------------------------------------
# The commands.


class GoroPrefix(gdb.Command):
    """Commands for goro fibers: goro fibers, goro bt ID, goro apply ID COMMAND."""

    def __init__(self):
        super().__init__("goro", gdb.COMMAND_STACK, gdb.COMPLETE_COMMAND, prefix=True)

    def invoke(self, arg, from_tty):
        gdb.execute("help goro")


def report_errors(fn):
    """Turns a GoroError into a gdb error: a message, not a Python traceback.

    So is a gdb.MemoryError from reading the runtime's records (a core file
    of a crashed program may hold garbage).
    """

    def wrapper(self, arg, from_tty):
        try:
            fn(self, arg, from_tty)
        except (GoroError, gdb.MemoryError) as exc:
            raise gdb.GdbError(str(exc))

    return wrapper


def list_fibers():
    sched = running_scheduler()
    fibers = all_fibers(sched)
    threads = worker_threads(sched)
    selected = gdb.selected_thread()
    print("goro: %d started fibers, maxprocs %d" % (len(fibers), int(sched["nprocs"])))
    rows = []
    for f in sorted(fibers, key=lambda f: f.id):
        state = f.state_text()
        thread = threads.get(f.address)
        if thread is not None:
            state += " on thread %d" % thread.num
        if f.is_main:
            state += " (main)"
        mark = "*" if thread is not None and thread == selected else " "
        rows.append((mark, str(f.id), state, f.spawn_text()))
    id_width = max([len("Id")] + [len(r[1]) for r in rows])
    state_width = max([len("State")] + [len(r[2]) for r in rows])
    print("  %*s  %-*s  %s" % (id_width, "Id", state_width, "State", "Spawn site"))
    for mark, fid, state, spawn in rows:
        print("%s %*s  %-*s  %s" % (mark, id_width, fid, state_width, state, spawn))
    unstarted = unstarted_count(sched, len(fibers))
    if unstarted:
        print("and %d fibers not started yet" % unstarted)


class GoroFibers(gdb.Command):
    """List goro's fibers: id, state (what a parked fiber waits on), spawn site.

Usage: goro fibers
A '*' marks the fiber running on the selected thread."""

    def __init__(self, name="goro fibers"):
        super().__init__(name, gdb.COMMAND_STACK, gdb.COMPLETE_NONE)

    @report_errors
    def invoke(self, arg, from_tty):
        list_fibers()


class GoroBacktrace(gdb.Command):
    """Backtrace of a goro fiber.

Usage: goro bt ID [BT-OPTIONS]    goro bt all [BT-OPTIONS]
ID is a fiber id: a number or a gdb expression without spaces (a variable
holding the id...). BT-OPTIONS are passed to `bt` (e.g. `full`, `-10`).
A parked or runnable fiber's frames are shown by loading its saved registers
into the selected thread for the command's duration; a running fiber's are
its worker thread's (`thread apply N bt`)."""

    def __init__(self):
        super().__init__("goro bt", gdb.COMMAND_STACK, gdb.COMPLETE_EXPRESSION)

    @report_errors
    def invoke(self, arg, from_tty):
        words = arg.split(None, 1)
        if not words:
            raise GoroError("usage: goro bt ID|all [BT-OPTIONS]")
        command = ("bt " + words[1]) if len(words) > 1 else "bt"
        sched = running_scheduler()
        if words[0] == "all":
            threads = worker_threads(sched)
            for f in sorted(all_fibers(sched), key=lambda f: f.id):
                print("\nfiber %d [%s]%s:" % (f.id, f.state_text(), " (main)" if f.is_main else ""))
                apply_to_fiber(sched, f, command, threads)
            return
        fiber = find_fiber(sched, parse_fiber_id(words[0]))
        main = " (main)" if fiber.is_main else ""
        print("fiber %d [%s]%s: %s" % (fiber.id, fiber.state_text(), main, fiber.spawn_text()))
        apply_to_fiber(sched, fiber, command)


class GoroApply(gdb.Command):
    """Run a gdb command in the context of a goro fiber.

Usage: goro apply ID COMMAND
The selected thread's registers are those of fiber ID while COMMAND runs
(`info frame`, `frame 2`, `info locals`...), then restored. In a core file
the fiber's frames are numbered from 1 and frame 1 is selected instead."""

    def __init__(self):
        super().__init__("goro apply", gdb.COMMAND_STACK, gdb.COMPLETE_EXPRESSION)

    @report_errors
    def invoke(self, arg, from_tty):
        words = arg.split(None, 1)
        if len(words) < 2:
            raise GoroError("usage: goro apply ID COMMAND")
        sched = running_scheduler()
        apply_to_fiber(sched, find_fiber(sched, parse_fiber_id(words[0])), words[1])


GoroPrefix()
GoroFibers()
GoroFibers("info fibers")
GoroBacktrace()
GoroApply()
