# Built by scripts/build-addon.mjs, which finds the BLAS and passes it in:
#   blas_lib     the BLAS shared library to link (Linux), e.g. .../openblas-openmp/libopenblas.so
#   blas_libdir  its folder, recorded as the run path so that this exact build is loaded
#                (Debian's libopenblas.so.0 alternative may point at a different build)
# On macOS the Accelerate framework is used and both stay empty.
{
  "variables": {
    "blas_lib%": "",
    "blas_libdir%": ""
  },
  "targets": [
    {
      "target_name": "layerstream_blas",
      "sources": ["blas.cc"],
      "cflags_cc": ["-O2", "-std=c++17"],
      "conditions": [
        ["OS=='mac'", {
          "libraries": ["-framework Accelerate"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["-O2", "-std=c++17"] }
        }, {
          "libraries": ["<(blas_lib)", "-Wl,-rpath,<(blas_libdir)", "-ldl"]
        }]
      ]
    }
  ]
}
