/* Tracing: sock_set_trace returns only when no call of the callback it
 * replaced is still running (so its user_data may be freed), refuses to be
 * called from inside the trace callback, and a fork child is not held up by
 * calls that threads of its parent had in progress, nor let go early by a
 * call that forked it. */
#define _GNU_SOURCE
#include "test-helpers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

/* How long the slow callback keeps its first call running. */
#define SLOW_CALL_MS 300

static atomic_int g_entered, g_left, g_slow_calls, g_other_calls;

/* The first call sleeps SLOW_CALL_MS between g_entered and g_left. */
static void slow_trace(const char *line, void *ud) {
  (void)line;
  (void)ud;
  if (atomic_fetch_add(&g_slow_calls, 1) == 0) {
    atomic_store(&g_entered, 1);
    sleep_ms(SLOW_CALL_MS);
    atomic_store(&g_left, 1);
  }
}

static void other_trace(const char *line, void *ud) {
  (void)line;
  (void)ud;
  atomic_fetch_add(&g_other_calls, 1);
}

/* One traced operation on this thread: a socket made and closed. */
static void traced_op(void) {
  sock_handle h = new_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM);
  ASSERT_OK(sock_close(h));
}

static void *traced_op_thread(void *arg) {
  (void)arg;
  traced_op();
  return NULL;
}

/* Starts a thread whose first traced call enters slow_trace, and returns
 * once that call is running. */
static pthread_t start_slow_call(void) {
  pthread_t t;
  atomic_store(&g_entered, 0);
  atomic_store(&g_left, 0);
  atomic_store(&g_slow_calls, 0);
  ASSERT_OK(sock_set_trace(slow_trace, NULL));
  ASSERT_EQ(pthread_create(&t, NULL, traced_op_thread, NULL), 0);
  uint64_t deadline = now_ms() + wait_bound_ms(10000);
  while (!atomic_load(&g_entered)) {
    ASSERT_MSG(now_ms() < deadline, "the trace callback never ran");
    sleep_ms(1);
  }
  return t;
}

TEST_IMPL(trace_set_waits_for_running_calls) {
  /* Replaced by another callback: set returns after the running call. */
  pthread_t t = start_slow_call();
  ASSERT_OK(sock_set_trace(other_trace, NULL));
  ASSERT_MSG(atomic_load(&g_left), "sock_set_trace returned while the old callback still ran");
  ASSERT_EQ(pthread_join(t, NULL), 0);
  int slow = atomic_load(&g_slow_calls);
  traced_op();
  ASSERT_EQ(atomic_load(&g_slow_calls), slow);
  ASSERT_GT(atomic_load(&g_other_calls), 0);

  /* Turned off: the same. */
  t = start_slow_call();
  ASSERT_OK(sock_set_trace(NULL, NULL));
  ASSERT_MSG(atomic_load(&g_left), "sock_set_trace(NULL) returned while the callback still ran");
  ASSERT_EQ(pthread_join(t, NULL), 0);
  slow = atomic_load(&g_slow_calls);
  int other = atomic_load(&g_other_calls);
  traced_op();
  ASSERT_EQ(atomic_load(&g_slow_calls), slow);
  ASSERT_EQ(atomic_load(&g_other_calls), other);
  return 0;
}

static atomic_int g_inner_status = -1, g_reentrant_calls;

/* Tries to turn tracing off from inside the callback, once. */
static void reentrant_trace(const char *line, void *ud) {
  (void)line;
  (void)ud;
  if (atomic_fetch_add(&g_reentrant_calls, 1) == 0)
    atomic_store(&g_inner_status, sock_set_trace(NULL, NULL));
}

TEST_IMPL(trace_set_from_callback_is_refused) {
  ASSERT_OK(sock_set_trace(reentrant_trace, NULL));
  traced_op();
  ASSERT_STATUS(SOCK_ALREADY_IN_PROGRESS, atomic_load(&g_inner_status));
  /* Nothing changed: the callback still gets lines. */
  int calls = atomic_load(&g_reentrant_calls);
  traced_op();
  ASSERT_GT(atomic_load(&g_reentrant_calls), calls);
  ASSERT_OK(sock_set_trace(NULL, NULL));
  calls = atomic_load(&g_reentrant_calls);
  traced_op();
  ASSERT_EQ(atomic_load(&g_reentrant_calls), calls);
  return 0;
}

TEST_IMPL(trace_fork_child_not_held_by_parent_calls) {
  /* A thread of the parent is inside the callback when the process forks;
   * that call never ends in the child, which must still be able to change
   * the callback. */
  pthread_t t = start_slow_call();
  pid_t pid = fork();
  ASSERT_SYS(pid);
  if (pid == 0) {
    alarm(wait_bound_ms(10000) / 1000 + 1); /* a hang ends the child with SIGALRM */
    sock_status s = sock_set_trace(other_trace, NULL);
    int before = atomic_load(&g_other_calls);
    traced_op();
    _exit(s == SOCK_OK && atomic_load(&g_other_calls) > before ? 0 : 1);
  }
  int wstatus = 0;
  ASSERT_SYS(waitpid(pid, &wstatus, 0));
  ASSERT_MSG(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0,
             "fork child: sock_set_trace hung or failed (wait status %#x)", wstatus);
  ASSERT_OK(sock_set_trace(NULL, NULL));
  ASSERT_MSG(atomic_load(&g_left), "sock_set_trace(NULL) returned while the callback still ran");
  ASSERT_EQ(pthread_join(t, NULL), 0);
  return 0;
}

/* ---- fork from inside the callback ------------------------------------- */

static atomic_int g_forked_calls;
static pid_t g_fork_pid = -1; /* 0 in the child, the child's pid in the parent */
static _Thread_local int t_slow_thread;

/* The first call forks (the call goes on in both processes); in the child,
 * calls made by a thread marked slow run for SLOW_CALL_MS. */
static void forking_trace(const char *line, void *ud) {
  (void)line;
  (void)ud;
  if (atomic_fetch_add(&g_forked_calls, 1) == 0) {
    g_fork_pid = fork();
    return;
  }
  if (t_slow_thread && atomic_fetch_add(&g_slow_calls, 1) == 0) {
    atomic_store(&g_entered, 1);
    sleep_ms(SLOW_CALL_MS);
    atomic_store(&g_left, 1);
  }
}

static void *slow_op_thread(void *arg) {
  (void)arg;
  t_slow_thread = 1;
  traced_op();
  return NULL;
}

/* In the fork child: a call of the same callback made there must still be
 * waited for by sock_set_trace. Exit 0 when it was. */
static void child_after_fork_in_callback(void) {
  alarm(wait_bound_ms(10000) / 1000 + 1); /* a hang ends the child with SIGALRM */
  pthread_t t;
  if (pthread_create(&t, NULL, slow_op_thread, NULL) != 0) _exit(2);
  while (!atomic_load(&g_entered)) sleep_ms(1);
  sock_status s = sock_set_trace(NULL, NULL);
  int waited = atomic_load(&g_left);
  pthread_join(t, NULL);
  _exit(s == SOCK_OK && waited ? 0 : 1);
}

TEST_IMPL(trace_fork_in_callback_child_still_waits) {
  /* The callback forks; the child's copy of that call ends in the child,
   * where the fork already forgot it. It must not count against the
   * child's own calls. */
  atomic_store(&g_forked_calls, 0);
  atomic_store(&g_entered, 0);
  atomic_store(&g_left, 0);
  atomic_store(&g_slow_calls, 0);
  ASSERT_OK(sock_set_trace(forking_trace, NULL));
  traced_op();
  if (g_fork_pid == 0) child_after_fork_in_callback();
  ASSERT_SYS(g_fork_pid);
  int wstatus = 0;
  ASSERT_SYS(waitpid(g_fork_pid, &wstatus, 0));
  ASSERT_MSG(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0,
             "fork child: sock_set_trace returned while the callback still ran, or hung "
             "(wait status %#x)",
             wstatus);
  ASSERT_OK(sock_set_trace(NULL, NULL));
  return 0;
}
