{
  "targets": [
    {
      "target_name": "video_llava_native",
      "sources": [
        "src/addon.c",
        "src/attention.c",
        "src/bandwidth.c",
        "src/cpu.c",
        "src/dnnl.c",
        "src/pool.c",
        "src/quantize.c",
        "src/mapping.c",
        "src/matmul.c",
        "src/kernels_ref.c",
        "src/kernels_avx2.c",
        "src/kernels_avx512.c",
        "src/kernels_avx512bf16.c",
        "src/kernels_amx.c"
      ],
      "cflags": ["-O3", "-std=gnu11", "-fno-strict-aliasing", "-Wall", "-Wno-unused-function"],
      "cflags!": ["-O2"],
      "libraries": ["-lpthread", "-lm", "-ldl"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
