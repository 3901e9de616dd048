/*
 * The pod sandbox's process for the local node's pause image (src/local/images.ts
 * compiles it with gcc -static). It holds the pod's namespaces open and does
 * nothing else: as PID 1 of the pod it reaps orphans, and it ends with status 0
 * on SIGTERM or SIGINT, which is how containerd stops a sandbox.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stopping = 0;

static void on_stop(int sig) {
  (void)sig;
  stopping = 1;
}

static void on_child(int sig) {
  (void)sig;
  int saved = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

int main(void) {
  struct sigaction stop, child;
  sigset_t stop_signals, waiting;
  /* TERM and INT are blocked except inside sigsuspend, so one that comes between the check and the wait is not lost. */
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigprocmask(SIG_BLOCK, &stop_signals, &waiting);
  sigdelset(&waiting, SIGTERM);
  sigdelset(&waiting, SIGINT);
  memset(&stop, 0, sizeof stop);
  memset(&child, 0, sizeof child);
  stop.sa_handler = on_stop;
  child.sa_handler = on_child;
  child.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  if (sigaction(SIGTERM, &stop, NULL) != 0 || sigaction(SIGINT, &stop, NULL) != 0 ||
      sigaction(SIGCHLD, &child, NULL) != 0) {
    static const char msg[] = "pause: cannot install signal handlers\n";
    (void)!write(2, msg, sizeof msg - 1);
    return 1;
  }
  while (!stopping) sigsuspend(&waiting);
  return 0;
}
