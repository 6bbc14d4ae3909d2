/* bench/ipc_pingpong.c: the floor under any lray message hop on this machine.
 * Two processes bounce 64 bytes over a unix socketpair, each waiting in
 * epoll_wait like a libuv loop, and the time per round trip is printed.
 *
 *   cc -O2 -o /tmp/ipc_pingpong bench/ipc_pingpong.c && /tmp/ipc_pingpong [N]
 *   taskset -c 0 /tmp/ipc_pingpong     # both processes on one core
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static void bounce(int fd, int n, int first)
{
  char b[64] = {0};
  int ep = epoll_create1(0);
  struct epoll_event e = {.events = EPOLLIN};
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
  for (int i = 0; i < n; i++) {
    if (first && write(fd, b, sizeof b) != sizeof b) exit(1);
    epoll_wait(ep, &e, 1, -1);
    if (read(fd, b, sizeof b) != sizeof b) exit(1);
    if (!first && write(fd, b, sizeof b) != sizeof b) exit(1);
  }
}

int main(int argc, char **argv)
{
  int n = argc > 1 ? atoi(argv[1]) : 200000, sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return 1;
  pid_t pid = fork();
  if (pid == 0) {
    bounce(sv[1], n, 0);
    _exit(0);
  }
  double t = now();
  bounce(sv[0], n, 1);
  double d = now() - t;
  waitpid(pid, NULL, 0);
  printf("unix socket ping-pong with epoll: %.2f us per round trip (%d round trips)\n",
         d / n * 1e6, n);
  return 0;
}
