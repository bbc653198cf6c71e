// layerstream's native accelerator: float32 GEMM, XᵀX (SYRK), Cholesky and the inverse from it,
// over the system BLAS/LAPACK (OpenBLAS on Linux, Accelerate on macOS).
//
// Every function works in place on caller-owned Float32Arrays (views into the tfjs-wasm heap):
// it reads its inputs, writes only its output argument, and never keeps a pointer after it returns.
// A detached or too-short array is refused with a RangeError rather than silently skipped, because
// wasm heap growth detaches every view that was built before it.
//
// Plain node_api.h (no node-addon-api), so the build needs only the Node headers.

#include <node_api.h>

#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <string>

extern "C" {
// CBLAS prototypes are declared here so the build needs no cblas.h: the enums are plain ints in
// every CBLAS ABI (OpenBLAS, Accelerate, reference CBLAS), and dimensions are 32-bit (LP64 builds).
void cblas_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha,
                 const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc);
void cblas_ssyrk(int order, int uplo, int trans, int n, int k, float alpha, const float* a,
                 int lda, float beta, float* c, int ldc);
}

namespace {

constexpr int kRowMajor = 101;
constexpr int kNoTrans = 111;
constexpr int kTrans = 112;
constexpr int kUpper = 121;

// LAPACK and the OpenBLAS thread controls are looked up at load time, so the addon still loads
// (with GEMM/SYRK only) against a BLAS that lacks them. The trailing size_t is gfortran's hidden
// length of the `uplo` string.
using PotrfFn = void (*)(const char*, const int*, float*, const int*, int*, size_t);
using SetThreadsFn = void (*)(int);
using GetIntFn = int (*)();
using GetConfigFn = char* (*)();

PotrfFn g_spotrf = nullptr;
PotrfFn g_spotri = nullptr;
SetThreadsFn g_setThreads = nullptr;
GetIntFn g_getThreads = nullptr;
GetIntFn g_getParallel = nullptr;
GetConfigFn g_getConfig = nullptr;
std::string g_libraryPath;

void* FindSymbol(void* handle, const char* name) {
  void* p = handle ? dlsym(handle, name) : nullptr;
  return p ? p : dlsym(RTLD_DEFAULT, name);
}

void ResolveOptionalSymbols() {
  // The BLAS is a dependency of this addon, which Node loads with RTLD_LOCAL, so its symbols are
  // not in the global scope: find the library through cblas_sgemm's address instead.
  void* handle = nullptr;
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&cblas_sgemm), &info) && info.dli_fname) {
    g_libraryPath = info.dli_fname;
    handle = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
  }
  g_spotrf = reinterpret_cast<PotrfFn>(FindSymbol(handle, "spotrf_"));
  g_spotri = reinterpret_cast<PotrfFn>(FindSymbol(handle, "spotri_"));
  g_setThreads = reinterpret_cast<SetThreadsFn>(FindSymbol(handle, "openblas_set_num_threads"));
  g_getThreads = reinterpret_cast<GetIntFn>(FindSymbol(handle, "openblas_get_num_threads"));
  g_getParallel = reinterpret_cast<GetIntFn>(FindSymbol(handle, "openblas_get_parallel"));
  g_getConfig = reinterpret_cast<GetConfigFn>(FindSymbol(handle, "openblas_get_config"));
}

// ---- argument helpers: each returns false after throwing a JS exception ----

bool Throw(napi_env env, const char* message, bool range = false) {
  if (range) {
    napi_throw_range_error(env, nullptr, message);
  } else {
    napi_throw_type_error(env, nullptr, message);
  }
  return false;
}

bool GetArgs(napi_env env, napi_callback_info cbinfo, size_t want, napi_value* argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, cbinfo, &argc, argv, nullptr, nullptr) != napi_ok) return false;
  if (argc < want) {
    char msg[96];
    snprintf(msg, sizeof msg, "expected %zu arguments, got %zu", want, argc);
    return Throw(env, msg);
  }
  return true;
}

bool GetInt(napi_env env, napi_value v, const char* name, int64_t* out) {
  if (napi_get_value_int64(env, v, out) != napi_ok || *out < 0 || *out > INT32_MAX) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s: expected an integer in [0, 2^31), got something else", name);
    return Throw(env, msg);
  }
  return true;
}

bool GetBool(napi_env env, napi_value v, bool* out) {
  if (napi_get_value_bool(env, v, out) != napi_ok) return Throw(env, "expected a boolean");
  return true;
}

// A Float32Array that holds at least `need` elements and is not detached.
bool GetFloats(napi_env env, napi_value v, const char* name, size_t need, float** out) {
  bool isTyped = false;
  napi_is_typedarray(env, v, &isTyped);
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (!isTyped ||
      napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_float32_array) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s: expected a Float32Array", name);
    return Throw(env, msg);
  }
  if (data == nullptr || length < need) {
    char msg[224];
    snprintf(msg, sizeof msg,
             "%s: Float32Array has %zu elements, needs %zu (a view built before the wasm heap "
             "grew is detached: build views inside the kernel call)",
             name, length, need);
    return Throw(env, msg, true);
  }
  *out = static_cast<float*>(data);
  return true;
}

napi_value Undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

napi_value Int(napi_env env, int64_t value) {
  napi_value v;
  napi_create_int64(env, value, &v);
  return v;
}

// Copies the upper triangle of a row-major n×n matrix onto its lower triangle (or the reverse),
// in tiles so that both the row reads and the column writes stay in cache.
void Mirror(float* a, int64_t n, bool upperToLower) {
  constexpr int64_t kTile = 64;
  for (int64_t i0 = 0; i0 < n; i0 += kTile) {
    for (int64_t j0 = i0; j0 < n; j0 += kTile) {
      const int64_t i1 = std::min(i0 + kTile, n), j1 = std::min(j0 + kTile, n);
      for (int64_t i = i0; i < i1; ++i) {
        for (int64_t j = std::max(j0, i + 1); j < j1; ++j) {
          if (upperToLower) {
            a[j * n + i] = a[i * n + j];
          } else {
            a[i * n + j] = a[j * n + i];
          }
        }
      }
    }
  }
}

void ZeroUpper(float* a, int64_t n) {
  for (int64_t i = 0; i + 1 < n; ++i) memset(a + i * n + i + 1, 0, sizeof(float) * (n - i - 1));
}

// ---- exported functions ----

// sgemm(a, b, c, batch, m, n, k, transA, transB, strideA, strideB)
// For each batch index: C[m,n] = op(A)·op(B), row-major; strideA/strideB are element offsets
// between batch items (0 broadcasts one matrix across the batch). C is dense, stride m·n.
napi_value Sgemm(napi_env env, napi_callback_info cbinfo) {
  napi_value argv[11];
  if (!GetArgs(env, cbinfo, 11, argv)) return nullptr;
  int64_t batch, m, n, k, strideA, strideB;
  bool transA, transB;
  if (!GetInt(env, argv[3], "batch", &batch) || !GetInt(env, argv[4], "m", &m) ||
      !GetInt(env, argv[5], "n", &n) || !GetInt(env, argv[6], "k", &k) ||
      !GetBool(env, argv[7], &transA) || !GetBool(env, argv[8], &transB) ||
      !GetInt(env, argv[9], "strideA", &strideA) || !GetInt(env, argv[10], "strideB", &strideB)) {
    return nullptr;
  }
  if (batch == 0 || m == 0 || n == 0) return Undefined(env);
  float *a, *b, *c;
  const size_t needA = static_cast<size_t>((batch - 1) * strideA + m * k);
  const size_t needB = static_cast<size_t>((batch - 1) * strideB + k * n);
  if (!GetFloats(env, argv[0], "a", needA, &a) || !GetFloats(env, argv[1], "b", needB, &b) ||
      !GetFloats(env, argv[2], "c", static_cast<size_t>(batch * m * n), &c)) {
    return nullptr;
  }
  if (k == 0) {
    memset(c, 0, sizeof(float) * batch * m * n);
    return Undefined(env);
  }
  const int lda = static_cast<int>(transA ? m : k);
  const int ldb = static_cast<int>(transB ? k : n);
  const int ta = transA ? kTrans : kNoTrans, tb = transB ? kTrans : kNoTrans;
  if (!transA && strideA == m * k && strideB == 0) {
    // A batch of row-major A against one B is a single taller GEMM: one call, better threading.
    cblas_sgemm(kRowMajor, ta, tb, static_cast<int>(batch * m), static_cast<int>(n),
                static_cast<int>(k), 1.0f, a, lda, b, ldb, 0.0f, c, static_cast<int>(n));
    return Undefined(env);
  }
  for (int64_t i = 0; i < batch; ++i) {
    cblas_sgemm(kRowMajor, ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
                1.0f, a + i * strideA, lda, b + i * strideB, ldb, 0.0f, c + i * m * n,
                static_cast<int>(n));
  }
  return Undefined(env);
}

// transpose(src, dst, p, a, b, q): dst[p][b][a][q] = src[p][a][b][q]. Every transpose that swaps
// two adjacent groups of axes has this form once size-1 axes are dropped and axes that stay
// neighbours are merged (see src/tensor/accel.ts).
napi_value Transpose(napi_env env, napi_callback_info cbinfo) {
  napi_value argv[6];
  if (!GetArgs(env, cbinfo, 6, argv)) return nullptr;
  int64_t P, A, B, Q;
  if (!GetInt(env, argv[2], "p", &P) || !GetInt(env, argv[3], "a", &A) ||
      !GetInt(env, argv[4], "b", &B) || !GetInt(env, argv[5], "q", &Q)) {
    return nullptr;
  }
  const size_t total = static_cast<size_t>(P * A * B * Q);
  float *src, *dst;
  if (!GetFloats(env, argv[0], "src", total, &src) || !GetFloats(env, argv[1], "dst", total, &dst)) {
    return nullptr;
  }
  if (total == 0) return Undefined(env);
  for (int64_t p = 0; p < P; ++p) {
    const float* s = src + p * A * B * Q;
    float* d = dst + p * A * B * Q;
    if (Q == 1) {
      // Square tiles keep both the strided reads and the strided writes within cache lines.
      constexpr int64_t kTile = 32;
      for (int64_t a0 = 0; a0 < A; a0 += kTile) {
        for (int64_t b0 = 0; b0 < B; b0 += kTile) {
          const int64_t a1 = std::min(a0 + kTile, A), b1 = std::min(b0 + kTile, B);
          for (int64_t a = a0; a < a1; ++a) {
            for (int64_t b = b0; b < b1; ++b) d[b * A + a] = s[a * B + b];
          }
        }
      }
    } else {
      for (int64_t a = 0; a < A; ++a) {
        for (int64_t b = 0; b < B; ++b) memcpy(d + (b * A + a) * Q, s + (a * B + b) * Q, sizeof(float) * Q);
      }
    }
  }
  return Undefined(env);
}

// gram(x, h, rows, cols): H[cols,cols] = XᵀX for row-major X[rows,cols], full symmetric.
napi_value Gram(napi_env env, napi_callback_info cbinfo) {
  napi_value argv[4];
  if (!GetArgs(env, cbinfo, 4, argv)) return nullptr;
  int64_t rows, cols;
  if (!GetInt(env, argv[2], "rows", &rows) || !GetInt(env, argv[3], "cols", &cols)) return nullptr;
  float *x, *h;
  if (!GetFloats(env, argv[0], "x", static_cast<size_t>(rows * cols), &x) ||
      !GetFloats(env, argv[1], "h", static_cast<size_t>(cols * cols), &h)) {
    return nullptr;
  }
  if (cols == 0) return Undefined(env);
  if (rows == 0) {
    memset(h, 0, sizeof(float) * cols * cols);
    return Undefined(env);
  }
  // SYRK computes one triangle: half the flops of a GEMM; the mirror costs O(cols²).
  cblas_ssyrk(kRowMajor, kUpper, kTrans, static_cast<int>(cols), static_cast<int>(rows), 1.0f, x,
              static_cast<int>(cols), 0.0f, h, static_cast<int>(cols));
  Mirror(h, cols, true);
  return Undefined(env);
}

// Shared body of cholesky/choleskyInverse: copies `src` into `dst` (unless they alias), runs the
// LAPACK routine with uplo 'U' in column-major terms, which is the lower triangle row-major.
// Returns LAPACK's info, or nullptr after throwing.
napi_value Factor(napi_env env, napi_callback_info cbinfo, PotrfFn fn, const char* name,
                  bool inverse) {
  napi_value argv[3];
  if (!GetArgs(env, cbinfo, 3, argv)) return nullptr;
  if (fn == nullptr) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s: the linked BLAS has no LAPACK (%s_ not found)", name,
             inverse ? "spotri" : "spotrf");
    napi_throw_error(env, nullptr, msg);
    return nullptr;
  }
  int64_t n;
  if (!GetInt(env, argv[2], "n", &n)) return nullptr;
  float *src, *dst;
  if (!GetFloats(env, argv[0], "src", static_cast<size_t>(n * n), &src) ||
      !GetFloats(env, argv[1], "dst", static_cast<size_t>(n * n), &dst)) {
    return nullptr;
  }
  if (n == 0) return Int(env, 0);
  if (dst != src) memcpy(dst, src, sizeof(float) * n * n);
  const int ni = static_cast<int>(n);
  int info = 0;
  fn("U", &ni, dst, &ni, &info, 1);
  if (info == 0) {
    if (inverse) {
      Mirror(dst, n, false);
    } else {
      ZeroUpper(dst, n);
    }
  }
  return Int(env, info);
}

// cholesky(src, dst, n) → info: dst = lower L with A = L·Lᵀ, zeros above; info > 0 names the
// 1-based pivot that was not positive.
napi_value Cholesky(napi_env env, napi_callback_info cbinfo) {
  return Factor(env, cbinfo, g_spotrf, "cholesky", false);
}

// choleskyInverse(src, dst, n) → info: dst = A⁻¹ (full symmetric) from the lower factor L in src.
napi_value CholeskyInverse(napi_env env, napi_callback_info cbinfo) {
  return Factor(env, cbinfo, g_spotri, "choleskyInverse", true);
}

// setThreads(n) → the thread count now in effect (0 when the BLAS offers no control).
napi_value SetThreads(napi_env env, napi_callback_info cbinfo) {
  napi_value argv[1];
  if (!GetArgs(env, cbinfo, 1, argv)) return nullptr;
  int64_t n;
  if (!GetInt(env, argv[0], "threads", &n)) return nullptr;
  if (g_setThreads && n > 0) g_setThreads(static_cast<int>(n));
  return Int(env, g_getThreads ? g_getThreads() : 0);
}

void SetProp(napi_env env, napi_value obj, const char* key, napi_value value) {
  napi_set_named_property(env, obj, key, value);
}

napi_value Str(napi_env env, const std::string& s) {
  napi_value v;
  napi_create_string_utf8(env, s.c_str(), s.size(), &v);
  return v;
}

napi_value Bool(napi_env env, bool b) {
  napi_value v;
  napi_get_boolean(env, b, &v);
  return v;
}

// info() → { library, config, parallel, threads, lapack }
napi_value Info(napi_env env, napi_callback_info) {
  napi_value obj;
  napi_create_object(env, &obj);
  SetProp(env, obj, "library", Str(env, g_libraryPath));
  SetProp(env, obj, "config", Str(env, g_getConfig ? g_getConfig() : ""));
  const char* parallel = "unknown";
  if (g_getParallel) {
    const int p = g_getParallel();
    parallel = p == 0 ? "sequential" : p == 1 ? "pthread" : p == 2 ? "openmp" : "unknown";
  }
  SetProp(env, obj, "parallel", Str(env, parallel));
  SetProp(env, obj, "threads", Int(env, g_getThreads ? g_getThreads() : 0));
  SetProp(env, obj, "lapack", Bool(env, g_spotrf != nullptr && g_spotri != nullptr));
  return obj;
}

napi_value Init(napi_env env, napi_value exports) {
  ResolveOptionalSymbols();
  const napi_property_descriptor props[] = {
      {"sgemm", nullptr, Sgemm, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"transpose", nullptr, Transpose, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"gram", nullptr, Gram, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"cholesky", nullptr, Cholesky, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"choleskyInverse", nullptr, CholeskyInverse, nullptr, nullptr, nullptr, napi_enumerable,
       nullptr},
      {"setThreads", nullptr, SetThreads, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"info", nullptr, Info, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
