//! Engines: who waits for readiness and who runs completion callbacks.
//!
//! An engine is one or more *loops*. A loop owns a mio `Poll` (epoll on
//! Linux: edge-triggered, each socket registered once), a `Waker` so other
//! threads can hand it work, a timerfd for deadlines, and a queue of
//! completions waiting for their callbacks. A threaded engine runs each
//! loop on its own thread; a manual engine has one loop that runs only
//! inside `sock_engine_poll`, on the caller's thread, and whose epoll
//! descriptor is readable whenever a poll has work.
//!
//! A loop knows no socket type: it names what it serves by a `u64` token
//! (the socket's handle) and hands readiness, deadlines, flush requests
//! and engine free to the [`Handler`] it was created with (libuv's
//! `uv__io_t.cb`, mio's `Token`).
//!
//! Callbacks run with no lock of the library held except the loop's
//! poller, which no other call waits for (a nested `sock_engine_poll` gets
//! `SOCK_ALREADY_IN_PROGRESS`) except `sock_engine_free` from another
//! thread, which waits for a running poll to end; so a callback may call
//! anything.

use std::cell::Cell;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use crate::completion::Completion;
use crate::fork;
use crate::port::Port;
use crate::status::{
    Error, Result, SOCK_ALREADY_IN_PROGRESS, SOCK_INVALID_ARGUMENT, SOCK_OPERATION_ABORTED,
};
use crate::sync;

/// Tokens below 2^24 are never handles (generations start at 1).
const WAKER: Token = Token(0);
const TIMER: Token = Token(1);
/// Callbacks one loop iteration runs before it lets the poller look again.
const MAX_CALLBACKS_PER_RUN: usize = 65_536;
/// Most threads `sock_engine_new` accepts.
pub const SOCK_ENGINE_MAX_THREADS: u32 = 256;

/// This thread runs a loop now (inside a callback, or a loop's thread).
pub fn on_a_loop() -> bool {
    CURRENT_LOOP.with(|c| !c.get().is_null())
}

/// What one poller event said about a descriptor.
#[derive(Clone, Copy, Debug)]
pub struct Readiness {
    /// Readable (errors and hang-ups count).
    pub readable: bool,
    /// Writable (errors and hang-ups count).
    pub writable: bool,
    /// The read side holds something reads do not use up: end of stream,
    /// an error, or urgent data (at whose mark a read stops short).
    pub read_lasting: bool,
}

/// What a loop calls for the things it serves; it never names them.
pub trait Handler: Sync {
    /// An event arrived for `token` (edge-triggered: something changed).
    fn ready(&self, lp: &Loop, token: u64, readiness: Readiness);
    /// Someone asked (`Loop::kick`) for `token`'s pending sends to be flushed.
    fn kicked(&self, lp: &Loop, token: u64);
    /// The deadline `token` registered with `Loop::set_timer` passed.
    fn deadline(&self, lp: &Loop, token: u64, now: Instant);
    /// The engine is being freed: end everything `token` has pending here.
    fn engine_freed(&self, lp: &Loop, token: u64);
}

thread_local! {
    /// The loop whose callbacks or events this thread is processing.
    static CURRENT_LOOP: Cell<*const Loop> = const { Cell::new(std::ptr::null()) };
}

struct Poller {
    /// `None` once the engine was freed (the epoll descriptor is closed).
    poll: Option<Poll>,
    events: Events,
    due: Vec<u64>,
}

/// The loop's descriptors other than the epoll one: released at engine free.
struct LoopOs {
    registry: Registry,
    waker: Waker,
    timer: OwnedFd,
}

#[derive(Default)]
struct LoopState {
    completions: VecDeque<Completion>,
    /// Reused buffer for the completions being run.
    spare: VecDeque<Completion>,
    /// Tokens whose pending sends need a flush without a readiness event.
    kicked: Vec<u64>,
    /// One entry per token with a deadline (see `set_timer`).
    timers: BTreeSet<(Instant, u64)>,
    armed: Option<Instant>,
    /// Tokens bound to this loop (`join`): what engine free must end.
    members: HashSet<u64>,
    /// A wake-up is already on its way.
    woken: bool,
    os: Option<LoopOs>,
}

/// One event loop.
pub struct Loop {
    handler: &'static dyn Handler,
    /// A queue engine's port: completions go there instead of running
    /// their callbacks.
    port: Option<Arc<Port>>,
    /// The default engine's: a socket bound to it when it is stopped
    /// (`sock_cleanup`) binds to the next default engine instead of failing.
    rebinds: bool,
    poller: Mutex<Poller>,
    state: Mutex<LoopState>,
    /// The engine was freed: no new operation may start here.
    stopped: AtomicBool,
    /// The loop's thread should finish (set after every member's
    /// operations were ended).
    exit: AtomicBool,
    /// The fork generation of the process that created the loop. In a fork
    /// child the loop's threads do not exist and its epoll set and eventfd
    /// are shared with the parent, so the child must not touch it.
    born: u64,
    epoll_fd: RawFd,
}

impl Loop {
    fn new(
        handler: &'static dyn Handler,
        port: Option<Arc<Port>>,
        rebinds: bool,
    ) -> Result<Arc<Loop>> {
        fork::watch();
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Waker::new(&registry, WAKER)?;
        // SAFETY: plain timerfd_create; the result is checked below.
        let tfd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if tfd < 0 {
            return Err(Error::last_os_error());
        }
        // SAFETY: timerfd_create returned a new descriptor nothing else owns.
        let timer = unsafe { OwnedFd::from_raw_fd(tfd) };
        registry.register(&mut SourceFd(&tfd), TIMER, Interest::READABLE)?;
        let epoll_fd = poll.as_raw_fd();
        Ok(Arc::new(Loop {
            handler,
            port,
            rebinds,
            poller: Mutex::new(Poller {
                poll: Some(poll),
                events: Events::with_capacity(1024),
                due: Vec::new(),
            }),
            state: Mutex::new(LoopState {
                os: Some(LoopOs {
                    registry,
                    waker,
                    timer,
                }),
                ..LoopState::default()
            }),
            stopped: AtomicBool::new(false),
            exit: AtomicBool::new(false),
            born: fork::generation(),
            epoll_fd,
        }))
    }

    fn state(&self) -> MutexGuard<'_, LoopState> {
        sync::lock(&self.state)
    }

    /// False in a fork child for a loop of the parent's.
    pub fn in_this_process(&self) -> bool {
        self.born == fork::generation()
    }

    /// The engine this loop belongs to was freed.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Completions go to a port (a queue engine), not to callbacks.
    pub fn is_queue(&self) -> bool {
        self.port.is_some()
    }

    /// A socket bound to this loop once it stopped binds anew (the default
    /// engine after `sock_cleanup`).
    pub fn rebinds(&self) -> bool {
        self.rebinds
    }

    /// This thread is running this loop (a callback or an event of it).
    pub fn on_this_thread(&self) -> bool {
        CURRENT_LOOP.with(|c| std::ptr::eq(c.get(), self))
    }

    fn wake(&self, st: &mut LoopState) {
        if !st.woken && !self.on_this_thread() {
            st.woken = true;
            if let Some(os) = &st.os {
                // An eventfd write; failing means the loop is awake anyway.
                let _ = os.waker.wake();
            }
        }
    }

    /// Binds `token` to this loop: engine free will end its operations.
    /// Fails with `SOCK_OPERATION_ABORTED` once the engine was freed
    /// (checked under the state lock that `stop` takes, so a token is
    /// either seen by the free or refused).
    pub fn join(&self, token: u64) -> Result<()> {
        let mut st = self.state();
        if self.is_stopped() {
            return Err(Error::new(SOCK_OPERATION_ABORTED));
        }
        st.members.insert(token);
        Ok(())
    }

    /// Unbinds `token` (close, attach elsewhere): forgets its timer too.
    pub fn leave(&self, token: u64, timer: Option<Instant>) {
        let mut st = self.state();
        st.members.remove(&token);
        if let Some(at) = timer {
            st.timers.remove(&(at, token));
        }
    }

    /// Registers a descriptor for `token`, edge-triggered for both
    /// directions, and for urgent data (see `Readiness::read_lasting`).
    pub fn register(&self, fd: RawFd, token: u64) -> Result<()> {
        let st = self.state();
        if self.is_stopped() {
            return Err(Error::new(SOCK_OPERATION_ABORTED));
        }
        let Some(os) = &st.os else {
            return Err(Error::new(SOCK_OPERATION_ABORTED));
        };
        os.registry.register(
            &mut SourceFd(&fd),
            Token(token as usize),
            Interest::READABLE | Interest::WRITABLE | Interest::PRIORITY,
        )?;
        Ok(())
    }

    pub fn deregister(&self, fd: RawFd) {
        // The descriptor is still open (its socket holds it), so this
        // cannot fail in a way that matters.
        if let Some(os) = &self.state().os {
            let _ = os.registry.deregister(&mut SourceFd(&fd));
        }
    }

    /// Queues a completion for its callback to run on this loop.
    pub fn push(&self, completion: Completion) {
        let mut st = self.state();
        st.completions.push_back(completion);
        self.wake(&mut st);
    }

    /// Asks the loop to flush `token`'s pending sends.
    pub fn kick(&self, token: u64) {
        let mut st = self.state();
        st.kicked.push(token);
        self.wake(&mut st);
    }

    /// Moves `token`'s one timer entry from `old` to `new` (either may be
    /// `None`); when `new` passes, the handler's `deadline` runs once.
    pub fn set_timer(&self, token: u64, old: Option<Instant>, new: Option<Instant>) {
        let mut st = self.state();
        if let Some(at) = old {
            st.timers.remove(&(at, token));
        }
        if let Some(at) = new {
            st.timers.insert((at, token));
            if st.armed.map_or(true, |armed| at < armed) {
                st.armed = Some(at);
                Self::arm(&st, at);
            }
        }
    }

    fn arm(st: &LoopState, at: Instant) {
        let Some(os) = &st.os else { return };
        // At least 1 ns: an all-zero it_value would disarm the timer.
        let d = at
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec and the descriptor is ours.
        unsafe { libc::timerfd_settime(os.timer.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    }

    /// The descriptor a program may poll: readable when `run_once` has work.
    pub fn fd(&self) -> RawFd {
        self.epoll_fd
    }

    /// One loop iteration: waits up to `timeout` (None: forever) for
    /// readiness, hands what became ready to the handler, expires deadlines
    /// and runs the queued callbacks. Returns how many callbacks ran, or
    /// `SOCK_OPERATION_ABORTED` (with that count) once the engine was freed.
    pub fn run_once(&self, timeout: Option<Duration>) -> (Result<()>, usize) {
        let mut poller = match self.poller.try_lock() {
            Ok(p) => p,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return (Err(Error::new(SOCK_ALREADY_IN_PROGRESS)), 0),
        };
        let previous = CURRENT_LOOP.with(|c| c.replace(self));
        let mut result = self.iterate(&mut poller, timeout);
        let mut ran = self.run_completions();
        if self.is_stopped() {
            // Freed during this iteration (from a callback, or by another
            // thread that now waits for the poller): say so, and close the
            // epoll descriptor. Whoever ends the operations runs their
            // callbacks: this thread if it freed the engine from a
            // callback (they were queued behind the running ones), or the
            // freeing thread, once it has the poller.
            ran += self.run_completions();
            poller.poll = None;
            result = Err(Error::new(SOCK_OPERATION_ABORTED));
        }
        CURRENT_LOOP.with(|c| c.set(previous));
        (result, ran)
    }

    fn iterate(&self, poller: &mut Poller, timeout: Option<Duration>) -> Result<()> {
        if self.is_stopped() {
            return Err(Error::new(SOCK_OPERATION_ABORTED));
        }
        let busy = {
            let st = self.state();
            !st.completions.is_empty() || !st.kicked.is_empty()
        };
        let timeout = if busy { Some(Duration::ZERO) } else { timeout };
        let Poller { poll, events, due } = poller;
        let Some(poll) = poll else {
            return Err(Error::new(SOCK_OPERATION_ABORTED));
        };
        if let Err(e) = poll.poll(events, timeout) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e.into());
            }
            events.clear();
        }
        self.state().woken = false;
        if self.is_stopped() {
            return Ok(());
        }
        let mut timer_fired = false;
        for event in events.iter() {
            match event.token() {
                WAKER => {}
                TIMER => timer_fired = true,
                Token(t) => {
                    let hangup = event.is_error();
                    let readiness = Readiness {
                        readable: hangup || event.is_readable() || event.is_read_closed(),
                        writable: hangup || event.is_writable() || event.is_write_closed(),
                        read_lasting: hangup || event.is_read_closed() || event.is_priority(),
                    };
                    self.handler.ready(self, t as u64, readiness);
                }
            }
        }
        if timer_fired {
            self.expire_timers(due);
        }
        let kicked = std::mem::take(&mut self.state().kicked);
        for token in kicked {
            self.handler.kicked(self, token);
        }
        Ok(())
    }

    fn expire_timers(&self, due: &mut Vec<u64>) {
        let now = Instant::now();
        {
            let mut st = self.state();
            if let Some(os) = &st.os {
                let mut buf = [0u8; 8];
                // SAFETY: reads at most 8 bytes into `buf` from our timerfd
                // (it only resets its readiness; EAGAIN is fine).
                unsafe { libc::read(os.timer.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            }
            while let Some(&(at, token)) = st.timers.first() {
                if at > now {
                    break;
                }
                st.timers.pop_first();
                due.push(token);
            }
            st.armed = st.timers.first().map(|&(at, _)| at);
            if let Some(at) = st.armed {
                Self::arm(&st, at);
            }
        }
        for token in due.drain(..) {
            self.handler.deadline(self, token, now);
        }
    }

    /// Runs queued callbacks, oldest first, with no library lock held.
    pub fn run_completions(&self) -> usize {
        let mut ran = 0;
        loop {
            let mut batch = {
                let mut st = self.state();
                if st.completions.is_empty() {
                    break;
                }
                if ran >= MAX_CALLBACKS_PER_RUN && !self.is_stopped() {
                    // Leave the rest for the next iteration, and say so.
                    st.woken = true;
                    if let Some(os) = &st.os {
                        let _ = os.waker.wake();
                    }
                    break;
                }
                let spare = std::mem::take(&mut st.spare);
                std::mem::replace(&mut st.completions, spare)
            };
            for c in batch.drain(..) {
                match &self.port {
                    Some(port) => port.deliver(c),
                    None => c.run(),
                }
                ran += 1;
            }
            let mut st = self.state();
            if st.spare.capacity() < batch.capacity() {
                st.spare = batch;
            }
        }
        ran
    }

    /// Engine free, first step: no new member, no new operation; a thread
    /// waiting in the poller wakes up.
    fn stop(&self) {
        let st = self.state();
        self.stopped.store(true, Ordering::Release);
        if let Some(os) = &st.os {
            let _ = os.waker.wake();
        }
    }

    /// Engine free, second step: every member ends its operations (their
    /// completions queue here, behind those already queued).
    fn end_members(&self) {
        let members: Vec<u64> = self.state().members.drain().collect();
        for token in members {
            self.handler.engine_freed(self, token);
        }
    }

    /// Engine free, last step: the descriptors go (the epoll one with the
    /// poller, by whoever holds it).
    fn release_os(&self) {
        let os = self.state().os.take();
        drop(os);
    }
}

/// What kind of engine: who runs its loops, and where completions go.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Loops on threads of their own; callbacks run there.
    Threaded,
    /// One loop, run by `sock_engine_poll`; callbacks run there.
    Manual,
    /// One loop on a thread of its own; completions go to a port.
    Queue,
    /// The default engine: as `Threaded`, and its sockets bind anew after
    /// it was stopped.
    Default,
}

/// An engine: its loops and, for a threaded one, their threads.
pub struct Engine {
    loops: Vec<Arc<Loop>>,
    next: AtomicUsize,
    threads: Mutex<Vec<JoinHandle<()>>>,
    manual: bool,
    port: Option<Arc<Port>>,
    /// `shut_down` is over: every operation was ended and its completion
    /// delivered (for a queue engine: into its port).
    finished: AtomicBool,
}

impl Engine {
    /// `threads` loops on as many threads (a manual engine: one loop, no
    /// thread; a queue engine: one loop and thread).
    pub fn new(kind: Kind, threads: u32, handler: &'static dyn Handler) -> Result<Arc<Engine>> {
        if threads > SOCK_ENGINE_MAX_THREADS {
            return Err(Error::new(SOCK_INVALID_ARGUMENT));
        }
        let count = match kind {
            Kind::Threaded | Kind::Default => threads.max(1) as usize,
            Kind::Manual | Kind::Queue => 1,
        };
        let port = match kind {
            Kind::Queue => Some(Arc::new(Port::new()?)),
            _ => None,
        };
        let loops = (0..count)
            .map(|_| Loop::new(handler, port.clone(), kind == Kind::Default))
            .collect::<Result<Vec<_>>>()?;
        let engine = Arc::new(Engine {
            loops,
            next: AtomicUsize::new(0),
            threads: Mutex::new(Vec::new()),
            manual: kind == Kind::Manual,
            port,
            finished: AtomicBool::new(false),
        });
        if !engine.manual {
            let mut handles = sync::lock(&engine.threads);
            for (i, lp) in engine.loops.iter().enumerate() {
                let lp = lp.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("sock-engine-{i}"))
                    .spawn(move || run_thread(lp));
                match spawned {
                    Ok(h) => handles.push(h),
                    Err(e) => {
                        drop(handles);
                        engine.shut_down();
                        return Err(e.into());
                    }
                }
            }
        }
        Ok(engine)
    }

    /// False in a fork child for an engine of the parent's.
    pub fn in_this_process(&self) -> bool {
        self.loops.iter().all(|lp| lp.in_this_process())
    }

    /// The engine was freed and its operations are all ended.
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// The loop a newly attached socket goes to (round robin).
    pub fn pick_loop(&self) -> Arc<Loop> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.loops.len();
        self.loops[i].clone()
    }

    /// A queue engine's port.
    pub fn port(&self) -> Option<&Arc<Port>> {
        self.port.as_ref()
    }

    /// The manual engine's one loop.
    pub fn manual_loop(&self) -> Option<&Arc<Loop>> {
        if self.manual {
            self.loops.first()
        } else {
            None
        }
    }

    /// Frees the engine: refuses new work, waits for a callback of it that
    /// is running on another thread to return, ends every pending
    /// operation of its sockets (each callback once, in submission order
    /// per socket, on one thread), then stops and joins its threads (except
    /// the calling one) and closes its descriptors.
    ///
    /// Who runs the aborted callbacks: a threaded engine's own threads; for
    /// a manual engine, this call, or — when it is called from one of the
    /// engine's own callbacks — the `sock_engine_poll` running that
    /// callback, after it (so they run after this call returned).
    pub fn shut_down(&self) {
        for lp in &self.loops {
            lp.stop();
        }
        if self.manual {
            let Some(lp) = self.loops.first() else { return };
            if lp.on_this_thread() {
                // Inside a callback of this loop: the poll running it holds
                // the poller and runs what we queue, then lets go of it.
                lp.end_members();
                lp.release_os();
                self.finished.store(true, Ordering::Release);
                return;
            }
            // A poll in progress on another thread ends (woken by `stop`)
            // after its running callbacks; from then on this thread alone
            // runs the loop.
            let mut poller = sync::lock(&lp.poller);
            let previous = CURRENT_LOOP.with(|c| c.replace(Arc::as_ptr(lp)));
            lp.end_members();
            lp.run_completions();
            CURRENT_LOOP.with(|c| c.set(previous));
            poller.poll = None;
            lp.release_os();
            self.finished.store(true, Ordering::Release);
            return;
        }
        for lp in &self.loops {
            if lp.on_this_thread() {
                // Our own thread, inside a callback: it runs these after
                // the callback returns.
                lp.end_members();
            } else {
                // Wait for the thread to finish its iteration, so no
                // callback of a member is running while we end its
                // operations (their callbacks then run on that thread).
                let _poller = sync::lock(&lp.poller);
                lp.end_members();
            }
            lp.exit.store(true, Ordering::Release);
            let st = lp.state();
            if let Some(os) = &st.os {
                let _ = os.waker.wake();
            }
        }
        let threads = std::mem::take(&mut *sync::lock(&self.threads));
        let me = std::thread::current().id();
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
        self.finished.store(true, Ordering::Release);
        if let Some(port) = &self.port {
            // Threads waiting in `sock_engine_dequeue` look again: the
            // aborted operations' entries are there now.
            port.wake_all();
        }
    }
}

fn run_thread(lp: Arc<Loop>) {
    CURRENT_LOOP.with(|c| c.set(Arc::as_ptr(&lp)));
    while !lp.exit.load(Ordering::Acquire) {
        if lp.is_stopped() {
            // Freed: wait (without polling) for the freeing thread to end
            // the members' operations, then run their callbacks below.
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        // A bug that panics must not end the thread and strand every
        // socket of the loop; a failing poll (out of memory) is retried
        // after a pause rather than spinning.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lp.run_once(None)));
        match ran {
            Ok((Ok(()), _)) => {}
            Ok((Err(e), _)) if e.status == SOCK_OPERATION_ABORTED => {}
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    lp.run_completions();
    sync::lock(&lp.poller).poll = None;
    lp.release_os();
}
