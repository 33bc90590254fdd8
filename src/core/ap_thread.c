#include "ap_thread.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

void ap_thread_background(void)
{
    /* setpriority(PRIO_PROCESS, tid) applies to the one thread on Linux */
    pid_t tid = (pid_t)syscall(SYS_gettid);
    (void)setpriority(PRIO_PROCESS, (id_t)tid, AP_THREAD_BACKGROUND_NICE);
}
