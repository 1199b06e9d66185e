/*
 * podvisor's orphan reaper and volume lock: the system calls Node.js does not expose.
 *
 * setChildSubreaper() marks this process as a child subreaper, so that orphans
 * of its descendants are re-parented to it even when it is not PID 1
 * (prctl(2), PR_SET_CHILD_SUBREAPER).
 *
 * reap(pids) waits, without blocking, for exactly the pids it is given. It
 * never calls waitpid(-1) or waitpid on a process group: libuv reaps the
 * children Node spawned by pid, and a child reaped by anyone else is lost to
 * libuv for good (its exit callback never fires), so the caller chooses the
 * pids and this module refuses anything but positive pids. No global state.
 *
 * tryLockExclusive(fd) takes flock(2)'s exclusive lock on an open file without
 * waiting (LOCK_EX | LOCK_NB). The kernel drops the lock when the last
 * descriptor of that open file closes, so it dies with the process however
 * the process ends; podvisor holds one on its VM volume (volume-lock.ts).
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>

/* The most pids one reap() call takes: far more than a container's processes. */
#define MAX_PIDS 65536

/* Returns `failed` from the calling function if a N-API call failed, with an exception pending. */
#define CHECK_OR(env, call, failed)                                                  \
  do {                                                                               \
    if ((call) != napi_ok) {                                                         \
      bool pending_ = false;                                                         \
      napi_is_exception_pending((env), &pending_);                                   \
      if (!pending_) napi_throw_error((env), "ERR_PID1_REAPER_NAPI", #call " failed"); \
      return (failed);                                                               \
    }                                                                                \
  } while (0)

static napi_value set_child_subreaper(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  CHECK_OR(env, napi_get_boolean(env, prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0, &result), NULL);
  return result;
}

/*
 * Copies every element of `array` into `pids`, reading each exactly once (an
 * element may be a getter), and checks that each is an integer in [1, INT_MAX].
 * Returns false with an exception pending otherwise.
 */
static bool read_pids(napi_env env, napi_value array, uint32_t length, pid_t* pids) {
  for (uint32_t i = 0; i < length; i++) {
    napi_value element;
    napi_valuetype type;
    double d = 0;
    CHECK_OR(env, napi_get_element(env, array, i, &element), false);
    CHECK_OR(env, napi_typeof(env, element, &type), false);
    if (type == napi_number) CHECK_OR(env, napi_get_value_double(env, element, &d), false);
    if (type != napi_number || !(d >= 1 && d <= INT_MAX) || d != floor(d)) {
      napi_throw_range_error(env, "ERR_PID1_REAPER_INVALID_ARG", "reap(pids): every pid must be an integer in [1, INT_MAX]");
      return false;
    }
    pids[i] = (pid_t)d;
  }
  return true;
}

/* Sets obj[key] to an int32, or to null when has_value is false. */
static napi_status set_int_or_null(napi_env env, napi_value obj, const char* key, bool has_value, int value) {
  napi_value v;
  napi_status s = has_value ? napi_create_int32(env, value, &v) : napi_get_null(env, &v);
  if (s != napi_ok) return s;
  return napi_set_named_property(env, obj, key, v);
}

/* Waits without blocking for each pid; returns the array of those reaped, or NULL with an exception pending. */
static napi_value wait_pids(napi_env env, const pid_t* pids, uint32_t length) {
  napi_value out;
  uint32_t reaped = 0;
  CHECK_OR(env, napi_create_array(env, &out), NULL);

  for (uint32_t i = 0; i < length; i++) {
    int status = 0;
    pid_t r;
    do {
      r = waitpid(pids[i], &status, WNOHANG);
    } while (r == -1 && errno == EINTR);

    if (r == 0) continue;                       /* still running */
    if (r == -1 && errno == ECHILD) continue;   /* not our child, or already reaped */
    if (r == -1) {
      char message[128];
      snprintf(message, sizeof message, "waitpid(%d) failed: %s", (int)pids[i], strerror(errno));
      napi_throw_error(env, "ERR_PID1_REAPER_WAITPID", message);
      return NULL;
    }

    napi_value entry;
    CHECK_OR(env, napi_create_object(env, &entry), NULL);
    CHECK_OR(env, set_int_or_null(env, entry, "pid", true, (int)r), NULL);
    CHECK_OR(env, set_int_or_null(env, entry, "status", true, status), NULL);
    CHECK_OR(env, set_int_or_null(env, entry, "code", WIFEXITED(status), WIFEXITED(status) ? WEXITSTATUS(status) : 0), NULL);
    CHECK_OR(env, set_int_or_null(env, entry, "signal", WIFSIGNALED(status), WIFSIGNALED(status) ? WTERMSIG(status) : 0), NULL);
    CHECK_OR(env, napi_set_element(env, out, reaped++, entry), NULL);
  }
  return out;
}

static napi_value reap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK_OR(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL), NULL);

  bool is_array = false;
  if (argc >= 1) CHECK_OR(env, napi_is_array(env, argv[0], &is_array), NULL);
  if (!is_array) {
    napi_throw_type_error(env, "ERR_PID1_REAPER_INVALID_ARG", "reap(pids): pids must be an array of positive integers");
    return NULL;
  }

  uint32_t length = 0;
  CHECK_OR(env, napi_get_array_length(env, argv[0], &length), NULL);
  if (length > MAX_PIDS) {
    napi_throw_range_error(env, "ERR_PID1_REAPER_INVALID_ARG", "reap(pids): too many pids (at most 65536)");
    return NULL;
  }
  if (length == 0) return wait_pids(env, NULL, 0);

  /* Every pid is read and validated before any is waited for, so a bad call changes nothing. */
  pid_t* pids = malloc(length * sizeof *pids);
  if (pids == NULL) {
    napi_throw_error(env, "ERR_PID1_REAPER_NAPI", "reap(pids): out of memory");
    return NULL;
  }
  napi_value out = read_pids(env, argv[0], length, pids) ? wait_pids(env, pids, length) : NULL;
  free(pids);
  return out;
}

/* tryLockExclusive(fd): true when this open file now holds the lock, false when another holds it; throws otherwise. */
static napi_value try_lock_exclusive(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_valuetype type = napi_undefined;
  double d = -1;
  CHECK_OR(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL), NULL);
  if (argc >= 1) CHECK_OR(env, napi_typeof(env, argv[0], &type), NULL);
  if (type == napi_number) CHECK_OR(env, napi_get_value_double(env, argv[0], &d), NULL);
  if (type != napi_number || !(d >= 0 && d <= INT_MAX) || d != floor(d)) {
    napi_throw_type_error(env, "ERR_VOLUME_LOCK_INVALID_ARG", "tryLockExclusive(fd): fd must be an open file descriptor (an integer >= 0)");
    return NULL;
  }
  int r;
  do {
    r = flock((int)d, LOCK_EX | LOCK_NB);
  } while (r == -1 && errno == EINTR);
  if (r == -1 && errno != EWOULDBLOCK) {
    char message[128];
    snprintf(message, sizeof message, "flock(%d, LOCK_EX|LOCK_NB) failed: %s", (int)d, strerror(errno));
    napi_throw_error(env, "ERR_VOLUME_LOCK_FLOCK", message);
    return NULL;
  }
  napi_value result;
  CHECK_OR(env, napi_get_boolean(env, r == 0, &result), NULL);
  return result;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
    { "setChildSubreaper", NULL, set_child_subreaper, NULL, NULL, NULL, napi_enumerable, NULL },
    { "reap", NULL, reap, NULL, NULL, NULL, napi_enumerable, NULL },
    { "tryLockExclusive", NULL, try_lock_exclusive, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
