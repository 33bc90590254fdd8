/*
 * ap_error: the project's error codes.
 *
 * Every function that can fail returns int: 0 (AP_OK) on success, a negative AP_E* code on
 * failure. AP_EAGAIN means "need more input / try later", AP_DECLINED "not mine". errno is
 * converted at the system call with ap_error_from_errno() and never travels further.
 * All functions here are thread-safe and allocate nothing.
 */
#ifndef AP_ERROR_H
#define AP_ERROR_H

/* X(name, value, message) */
#define AP_ERROR_LIST(X)                                                                           \
    X(AP_OK, 0, "ok")                                                                              \
    X(AP_EAGAIN, -1, "need more input")                                                            \
    X(AP_DECLINED, -2, "declined")                                                                 \
    X(AP_ENOMEM, -3, "out of memory")                                                              \
    X(AP_EINVAL, -4, "invalid argument")                                                           \
    X(AP_EIO, -5, "input/output error")                                                            \
    X(AP_ELIMIT, -6, "limit exceeded")                                                             \
    X(AP_ENOTFOUND, -7, "not found")                                                               \
    X(AP_EEXIST, -8, "already exists")                                                             \
    X(AP_ECLOSED, -9, "connection closed")                                                         \
    X(AP_ETIMEDOUT, -10, "timed out")                                                              \
    X(AP_EHTTP, -11, "malformed HTTP")                                                             \
    X(AP_ESYS, -12, "system call failed")                                                          \
    X(AP_EADDR, -13, "cannot bind address")                                                        \
    X(AP_ECONFLICT, -14, "conflict")                                                               \
    X(AP_EPERM, -15, "permission denied")                                                          \
    X(AP_EBUSY, -16, "busy")                                                                       \
    X(AP_ECORRUPT, -17, "corrupt data")

enum ap_error {
#define AP__ERROR_ENUM(name, value, msg) name = value,
    AP_ERROR_LIST(AP__ERROR_ENUM)
#undef AP__ERROR_ENUM
};

/* Static, never NULL, for any int (unknown codes give "unknown error"). */
const char *ap_strerror(int code);

/* Maps an errno value to the nearest AP_E* code (ENOMEM->AP_ENOMEM, EAGAIN->AP_EAGAIN, ...). */
int ap_error_from_errno(int err);

#endif
