/* Runs every registered TEST in its own forked child with a timeout, so a
 * crash or hang in one test is reported and the rest still run. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include "test/test.h"

#define MAX_TESTS 512
#define TIMEOUT_S 20

static struct {
  const char *name;
  lr_test_fn fn;
} tests[MAX_TESTS];
static int ntests;

void lr_test_register(const char *name, lr_test_fn fn)
{
  if (ntests < MAX_TESTS) {
    tests[ntests].name = name;
    tests[ntests].fn = fn;
    ntests++;
  }
}

int main(int argc, char **argv)
{
  int passed = 0, failed = 0;
  for (int i = 0; i < ntests; i++) {
    if (argc > 1 && !strstr(tests[i].name, argv[1])) continue;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      alarm(TIMEOUT_S);
      tests[i].fn();
      _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
      passed++;
      printf("ok   %s\n", tests[i].name);
    } else {
      failed++;
      if (WIFSIGNALED(st))
        printf("FAIL %s (signal %d)\n", tests[i].name, WTERMSIG(st));
      else
        printf("FAIL %s\n", tests[i].name);
    }
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
