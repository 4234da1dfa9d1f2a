/*
 * Test runner: each test runs in its own forked child with a time limit.
 *
 *   ./runner            run every test in test-list.h
 *   ./runner NAME...    run the named tests only
 *   ./runner --list     print the test names
 *
 * Prints "ok N - name" or "not ok N - name (reason)" per test and, as its
 * last line, "P passed, F failed". Exit status 1 if any test failed.
 *
 * SIGPIPE keeps its default action here and in the children: a library that
 * raised it would kill the test, and the runner would name the signal.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-list.h"

#ifndef TEST_TIMEOUT_S
#define TEST_TIMEOUT_S 60 /* seconds per test */
#endif

#define X(name) int run_test_##name(void);
TEST_LIST(X)
#undef X

typedef struct {
  const char *name;
  int (*fn)(void);
} test_entry;

static const test_entry tests[] = {
#define X(name) {#name, run_test_##name},
    TEST_LIST(X)
#undef X
};

#define NTESTS (sizeof tests / sizeof tests[0])

static const char *signame(int sig) {
  switch (sig) {
#define S(x) case x: return #x;
    S(SIGHUP) S(SIGINT) S(SIGQUIT) S(SIGILL) S(SIGTRAP) S(SIGABRT) S(SIGBUS)
    S(SIGFPE) S(SIGKILL) S(SIGUSR1) S(SIGSEGV) S(SIGUSR2) S(SIGPIPE)
    S(SIGALRM) S(SIGTERM) S(SIGCHLD) S(SIGXCPU) S(SIGXFSZ) S(SIGSYS)
#undef S
    default: return "unknown signal";
  }
}

/* Seconds a test may run: SOCK_TEST_TIMEOUT_S overrides TEST_TIMEOUT_S,
 * for slow runs such as under valgrind. */
static int test_timeout_s(void) {
  const char *env = getenv("SOCK_TEST_TIMEOUT_S");
  int t = env ? atoi(env) : 0;
  return t > 0 ? t : TEST_TIMEOUT_S;
}

/* Runs one test in a child; returns 1 if it passed, with *reason set. */
static int run_one(const test_entry *t, char *reason, size_t cap) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == -1) {
    snprintf(reason, cap, "fork: %s", strerror(errno));
    return 0;
  }
  if (pid == 0) {
    /* Default dispositions, nothing blocked: what a user program has. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGALRM, SIG_DFL);
    setvbuf(stdout, NULL, _IONBF, 0);
    alarm((unsigned)test_timeout_s());
    int rc = t->fn();
    exit(rc == 0 ? 0 : 2);
  }
  int status;
  while (waitpid(pid, &status, 0) == -1) {
    if (errno != EINTR) {
      snprintf(reason, cap, "waitpid: %s", strerror(errno));
      return 0;
    }
  }
  if (WIFEXITED(status)) {
    if (WEXITSTATUS(status) == 0) return 1;
    snprintf(reason, cap, "exit code %d", WEXITSTATUS(status));
    return 0;
  }
  if (WIFSIGNALED(status)) {
    if (WTERMSIG(status) == SIGALRM)
      snprintf(reason, cap, "timeout after %d s", test_timeout_s());
    else
      snprintf(reason, cap, "signal %s", signame(WTERMSIG(status)));
    return 0;
  }
  snprintf(reason, cap, "unexpected wait status 0x%x", status);
  return 0;
}

/* Whether SOCK_TEST_SKIP (test names separated by spaces or commas) names
 * this test: for runs where a test's precondition cannot hold, such as
 * real parallelism under valgrind, which runs one thread at a time. */
static int skipped_by_env(const char *name) {
  const char *list = getenv("SOCK_TEST_SKIP");
  size_t len = strlen(name);
  for (const char *p = list; p && *p;) {
    size_t word = strcspn(p, " ,");
    if (word == len && strncmp(p, name, len) == 0) return 1;
    p += word;
    p += strspn(p, " ,");
  }
  return 0;
}

int main(int argc, char **argv) {
  int passed = 0, failed = 0, skipped = 0, n = 0;
  char reason[128];

  signal(SIGPIPE, SIG_DFL);

  if (argc == 2 && strcmp(argv[1], "--list") == 0) {
    for (size_t i = 0; i < NTESTS; i++) printf("%s\n", tests[i].name);
    return 0;
  }

  for (int a = 1; a < argc; a++) {
    int found = 0;
    for (size_t i = 0; i < NTESTS; i++) found |= strcmp(argv[a], tests[i].name) == 0;
    if (!found) {
      fprintf(stderr, "runner: no test named '%s' (try --list)\n", argv[a]);
      return 2;
    }
  }

  for (size_t i = 0; i < NTESTS; i++) {
    if (argc > 1) {
      int wanted = 0;
      for (int a = 1; a < argc; a++) wanted |= strcmp(argv[a], tests[i].name) == 0;
      if (!wanted) continue;
    }
    n++;
    if (skipped_by_env(tests[i].name)) {
      skipped++;
      printf("ok %d - %s # SKIP (SOCK_TEST_SKIP)\n", n, tests[i].name);
      continue;
    }
    reason[0] = '\0';
    if (run_one(&tests[i], reason, sizeof reason)) {
      passed++;
      printf("ok %d - %s\n", n, tests[i].name);
    } else {
      failed++;
      printf("not ok %d - %s (%s)\n", n, tests[i].name, reason);
    }
    fflush(stdout);
  }
  fflush(stderr);
  if (skipped)
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  else
    printf("%d passed, %d failed\n", passed, failed);
  fflush(stdout);
  return failed ? 1 : 0;
}
