#include "ap_error.h"

#include <errno.h>

const char *ap_strerror(int code)
{
    switch (code) {
#define AP__ERROR_CASE(name, value, msg)                                                           \
    case value:                                                                                    \
        return msg;
        AP_ERROR_LIST(AP__ERROR_CASE)
#undef AP__ERROR_CASE
    }
    return "unknown error";
}

int ap_error_from_errno(int err)
{
    switch (err) {
    case 0:
        return AP_OK;
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
    case EINTR:
        return AP_EAGAIN;
    case ENOMEM:
        return AP_ENOMEM;
    case EINVAL:
        return AP_EINVAL;
    case EADDRINUSE:
    case EADDRNOTAVAIL:
        return AP_EADDR;
    case ENOENT:
        return AP_ENOTFOUND;
    case EEXIST:
        return AP_EEXIST;
    case ETIMEDOUT:
        return AP_ETIMEDOUT;
    case EPIPE:
    case ECONNRESET:
        return AP_ECLOSED;
    case EACCES:
    case EPERM:
        return AP_EPERM;
    case EIO:
    case ENOSPC:
        return AP_EIO;
    default:
        return AP_ESYS;
    }
}
