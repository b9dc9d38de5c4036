//! With the `cuda` feature, compiles lade's own CUDA kernels (src/model/cuda/*.cu) and
//! the kernel variants of the dev harness (dev/cuda/*.cu) to PTX with nvcc; the
//! driver JIT-compiles the PTX for the GPU at load. Without it, does nothing.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // kernels.cu includes the other .cu files of the folder.
    println!("cargo:rerun-if-changed=src/model/cuda");
    println!("cargo:rerun-if-changed=dev/cuda");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let nvcc = std::env::var("CUDA_HOME")
        .map(|h| PathBuf::from(h).join("bin/nvcc"))
        .unwrap_or_else(|_| PathBuf::from("nvcc"));
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    // The production kernels (the matmul on Hopper's wgmma uses instructions of compute
    // capability 9.0 only, the "a" target; it is loaded on such devices only), and the
    // variants of the dev harness (dev/cuda).
    for (src, ptx, arch) in [
        ("src/model/cuda/kernels.cu", "kernels.ptx", cap.clone()),
        (
            "src/model/cuda/gemm_wgmma.cu",
            "gemm_wgmma.ptx",
            "90a".to_string(),
        ),
        (
            "dev/cuda/gemm_variants.cu",
            "gemm_variants.ptx",
            cap.clone(),
        ),
        (
            "dev/cuda/attention_variants.cu",
            "attention_variants.ptx",
            cap.clone(),
        ),
        (
            "dev/cuda/gemm_wgmma.cu",
            "gemm_wgmma_variants.ptx",
            "90a".to_string(),
        ),
    ] {
        let status = Command::new(&nvcc)
            .args(["--ptx", "-O3", "--fmad=true", "-std=c++17"])
            .arg(format!("-arch=compute_{arch}"))
            .arg(src)
            .arg("-o")
            .arg(out_dir.join(ptx))
            .status()
            .unwrap_or_else(|e| panic!("running {}: {e} (set CUDA_HOME)", nvcc.display()));
        assert!(status.success(), "nvcc failed on {src}");
    }
}
