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
//! Callbacks run with no lock of the library held except the loop's
//! poller, which no other call waits for (a nested `sock_engine_poll` gets
//! `SOCK_ALREADY_IN_PROGRESS`), so a callback may call anything.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use crate::asyncio;
use crate::fork;
use crate::handle::{self, sock_handle};
use crate::queue::Completion;
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

thread_local! {
    /// The loop whose callbacks or events this thread is processing.
    static CURRENT_LOOP: Cell<*const Loop> = const { Cell::new(std::ptr::null()) };
}

struct Poller {
    poll: Poll,
    events: Events,
    due: Vec<sock_handle>,
}

#[derive(Default)]
struct LoopState {
    completions: VecDeque<Completion>,
    /// Reused buffer for the completions being run.
    spare: VecDeque<Completion>,
    /// Sockets whose pending sends need a flush without a readiness event.
    kicked: Vec<sock_handle>,
    timers: BinaryHeap<Reverse<(Instant, sock_handle)>>,
    armed: Option<Instant>,
    /// Sockets registered with this loop.
    attached: HashSet<sock_handle>,
    /// A wake-up is already on its way.
    woken: bool,
}

/// One event loop.
pub struct Loop {
    poller: Mutex<Poller>,
    registry: Registry,
    waker: Waker,
    timer: OwnedFd,
    state: Mutex<LoopState>,
    /// The engine was freed: no new operation may start here.
    stopped: AtomicBool,
    /// The loop's thread should finish (after `stopped`, once every
    /// pending operation was aborted).
    exit: AtomicBool,
    /// The fork generation of the process that created the loop. In a fork
    /// child the loop's threads do not exist and its epoll set and eventfd
    /// are shared with the parent, so the child must not touch it.
    born: u64,
    epoll_fd: RawFd,
}

impl Loop {
    fn new() -> Result<Arc<Loop>> {
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
            poller: Mutex::new(Poller {
                poll,
                events: Events::with_capacity(1024),
                due: Vec::new(),
            }),
            registry,
            waker,
            timer,
            state: Mutex::new(LoopState::default()),
            stopped: AtomicBool::new(false),
            exit: AtomicBool::new(false),
            born: fork::generation(),
            epoll_fd,
        }))
    }

    /// False in a fork child for a loop of the parent's.
    pub fn in_this_process(&self) -> bool {
        self.born == fork::generation()
    }

    /// The engine this loop belongs to was freed.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    fn on_this_thread(&self) -> bool {
        CURRENT_LOOP.with(|c| std::ptr::eq(c.get(), self))
    }

    fn wake(&self, st: &mut LoopState) {
        if !st.woken && !self.on_this_thread() {
            st.woken = true;
            // An eventfd write; failing means the loop is awake anyway.
            let _ = self.waker.wake();
        }
    }

    /// Registers a socket's descriptor, edge-triggered for both directions.
    /// Fails with `SOCK_OPERATION_ABORTED` once the engine was freed
    /// (checked under the state lock that `Engine::shut_down` takes, so a
    /// socket is either seen by the shutdown or refused).
    pub fn register(&self, fd: RawFd, h: sock_handle) -> Result<()> {
        let mut st = sync::lock(&self.state);
        if self.is_stopped() {
            return Err(Error::new(SOCK_OPERATION_ABORTED));
        }
        self.registry.register(
            &mut SourceFd(&fd),
            Token(h as usize),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        st.attached.insert(h);
        Ok(())
    }

    pub fn deregister(&self, fd: RawFd, h: sock_handle) {
        // The descriptor is still open (its socket holds it), so this
        // cannot fail in a way that matters.
        let _ = self.registry.deregister(&mut SourceFd(&fd));
        sync::lock(&self.state).attached.remove(&h);
    }

    /// Queues a completion for its callback to run on this loop.
    pub fn push(&self, completion: Completion) {
        let mut st = sync::lock(&self.state);
        st.completions.push_back(completion);
        self.wake(&mut st);
    }

    /// Asks the loop to flush a socket's pending sends.
    pub fn kick(&self, h: sock_handle) {
        let mut st = sync::lock(&self.state);
        st.kicked.push(h);
        self.wake(&mut st);
    }

    /// Makes the loop look at socket `h` when `at` passes.
    pub fn add_timer(&self, at: Instant, h: sock_handle) {
        let mut st = sync::lock(&self.state);
        st.timers.push(Reverse((at, h)));
        if st.armed.map_or(true, |armed| at < armed) {
            st.armed = Some(at);
            self.arm(at);
        }
    }

    fn arm(&self, at: Instant) {
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
        unsafe { libc::timerfd_settime(self.timer.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    }

    /// The descriptor a program may poll: readable when `run_once` has work.
    pub fn fd(&self) -> RawFd {
        self.epoll_fd
    }

    /// One loop iteration: waits up to `timeout` (None: forever) for
    /// readiness, flushes what became ready, expires deadlines and runs the
    /// queued callbacks. Returns how many callbacks ran.
    pub fn run_once(&self, timeout: Option<Duration>) -> Result<usize> {
        let mut poller = match self.poller.try_lock() {
            Ok(p) => p,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(Error::new(SOCK_ALREADY_IN_PROGRESS)),
        };
        let previous = CURRENT_LOOP.with(|c| c.replace(self));
        let result = self.iterate(&mut poller, timeout);
        CURRENT_LOOP.with(|c| c.set(previous));
        result
    }

    fn iterate(&self, poller: &mut Poller, timeout: Option<Duration>) -> Result<usize> {
        let busy = {
            let st = sync::lock(&self.state);
            !st.completions.is_empty() || !st.kicked.is_empty()
        };
        let timeout = if busy { Some(Duration::ZERO) } else { timeout };
        let Poller { poll, events, due } = poller;
        if let Err(e) = poll.poll(events, timeout) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e.into());
            }
            events.clear();
        }
        sync::lock(&self.state).woken = false;
        let mut timer_fired = false;
        for event in events.iter() {
            match event.token() {
                WAKER => {}
                TIMER => timer_fired = true,
                Token(t) => {
                    let h = t as sock_handle;
                    let Some(sock) = handle::lookup(h) else {
                        continue;
                    };
                    if event.is_writable() || event.is_error() || event.is_write_closed() {
                        asyncio::flush_sends(&sock, h, self);
                    }
                    if event.is_readable() || event.is_error() || event.is_read_closed() {
                        asyncio::flush_recvs(&sock, h, self);
                    }
                }
            }
        }
        if timer_fired {
            self.expire_timers(due);
        }
        let kicked = std::mem::take(&mut sync::lock(&self.state).kicked);
        for h in kicked {
            if let Some(sock) = handle::lookup(h) {
                asyncio::flush_sends(&sock, h, self);
            }
        }
        Ok(self.run_completions())
    }

    fn expire_timers(&self, due: &mut Vec<sock_handle>) {
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into `buf` from our timerfd (it only
        // resets its readiness; EAGAIN is fine).
        unsafe { libc::read(self.timer.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        let now = Instant::now();
        {
            let mut st = sync::lock(&self.state);
            while let Some(Reverse((at, h))) = st.timers.peek().copied() {
                if at > now {
                    break;
                }
                st.timers.pop();
                if !due.contains(&h) {
                    due.push(h);
                }
            }
            st.armed = st.timers.peek().map(|Reverse((at, _))| *at);
            if let Some(at) = st.armed {
                self.arm(at);
            }
        }
        for h in due.drain(..) {
            if let Some(sock) = handle::lookup(h) {
                asyncio::expire(&sock, h, self, now);
            }
        }
    }

    /// Runs queued callbacks, oldest first, with no library lock held.
    pub fn run_completions(&self) -> usize {
        let mut ran = 0;
        loop {
            let mut batch = {
                let mut st = sync::lock(&self.state);
                if st.completions.is_empty() {
                    break;
                }
                if ran >= MAX_CALLBACKS_PER_RUN {
                    // Leave the rest for the next iteration, and say so.
                    st.woken = true;
                    let _ = self.waker.wake();
                    break;
                }
                let spare = std::mem::take(&mut st.spare);
                std::mem::replace(&mut st.completions, spare)
            };
            for c in batch.drain(..) {
                let cb = c.callback;
                crate::trace::completion(c.handle, cb.op, c.bytes, c.status, cb.submitted);
                // SAFETY: the caller gave us this function pointer for this
                // operation and promised it is callable with these
                // arguments; it runs exactly once, here.
                unsafe { (cb.func)(c.handle, c.status, c.bytes, cb.user_data.0) };
                ran += 1;
            }
            let mut st = sync::lock(&self.state);
            if st.spare.capacity() < batch.capacity() {
                st.spare = batch;
            }
        }
        ran
    }

    fn exit(&self) {
        self.exit.store(true, Ordering::Release);
        let _ = self.waker.wake();
    }
}

/// An engine: its loops and, for a threaded one, their threads.
pub struct Engine {
    loops: Vec<Arc<Loop>>,
    next: AtomicUsize,
    threads: Mutex<Vec<JoinHandle<()>>>,
    manual: bool,
}

impl Engine {
    /// `threads == 0`: a manual engine; else that many loops and threads.
    pub fn new(threads: u32) -> Result<Arc<Engine>> {
        if threads > SOCK_ENGINE_MAX_THREADS {
            return Err(Error::new(SOCK_INVALID_ARGUMENT));
        }
        let count = threads.max(1) as usize;
        let loops = (0..count)
            .map(|_| Loop::new())
            .collect::<Result<Vec<_>>>()?;
        let engine = Arc::new(Engine {
            loops,
            next: AtomicUsize::new(0),
            threads: Mutex::new(Vec::new()),
            manual: threads == 0,
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

    /// The loop a newly attached socket goes to (round robin).
    pub fn pick_loop(&self) -> Arc<Loop> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.loops.len();
        self.loops[i].clone()
    }

    /// The manual engine's one loop.
    pub fn manual_loop(&self) -> Option<&Arc<Loop>> {
        if self.manual {
            self.loops.first()
        } else {
            None
        }
    }

    /// Aborts every pending operation of the engine's sockets (each
    /// callback once, with `SOCK_OPERATION_ABORTED`), then stops its loops
    /// and joins its threads (except the calling one, if it is one).
    pub fn shut_down(&self) {
        for lp in &self.loops {
            let attached: Vec<sock_handle> = {
                let mut st = sync::lock(&lp.state);
                lp.stopped.store(true, Ordering::Release);
                st.attached.drain().collect()
            };
            for h in attached {
                if let Some(sock) = handle::lookup(h) {
                    asyncio::detach(&sock, h, lp);
                }
            }
        }
        if self.manual {
            // Nobody will poll again: run the aborted callbacks here.
            if let Some(lp) = self.loops.first() {
                lp.run_completions();
            }
            return;
        }
        for lp in &self.loops {
            lp.exit();
        }
        let threads = std::mem::take(&mut *sync::lock(&self.threads));
        let me = std::thread::current().id();
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

fn run_thread(lp: Arc<Loop>) {
    CURRENT_LOOP.with(|c| c.set(Arc::as_ptr(&lp)));
    while !lp.exit.load(Ordering::Acquire) {
        // A bug that panics must not end the thread and strand every
        // socket of the loop; a failing poll (out of memory) is retried
        // after a pause rather than spinning.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lp.run_once(None)));
        if !matches!(ran, Ok(Ok(_))) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    lp.run_completions();
}

/// The engine async operations use when their socket was never attached:
/// started on first use, with one I/O thread, for the life of the process
/// (a fork child starts its own).
pub fn default_engine() -> Result<Arc<Engine>> {
    static DEFAULT: Mutex<Option<Arc<Engine>>> = Mutex::new(None);
    let mut slot = sync::lock(&DEFAULT);
    match slot.take() {
        Some(e) if e.in_this_process() => {
            *slot = Some(e.clone());
            return Ok(e);
        }
        // The parent's: its thread is not in this process and its
        // descriptors are shared with the parent; never touch it again.
        Some(e) => std::mem::forget(e),
        None => {}
    }
    let engine = Engine::new(1)?;
    *slot = Some(engine.clone());
    Ok(engine)
}
