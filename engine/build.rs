//! Build script: on Windows targets, gives sluiced.exe its icon and version resource
//! (winresource, through mingw-w64's windres when cross-compiling from Linux). Nothing
//! happens for other targets.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../assets/icons/sluice.ico");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("windows") {
        return;
    }
    let mut resource = winresource::WindowsResource::new();
    resource
        .set_icon(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../assets/icons/sluice.ico"
        ))
        .set("ProductName", "Sluice")
        .set(
            "FileDescription",
            "sluiced: spiped-compatible encrypted pipes",
        )
        .set("OriginalFilename", "sluiced.exe")
        .set("LegalCopyright", "The Sluice developers. BSD-2-Clause.");
    if let Err(e) = resource.compile_for("sluiced") {
        eprintln!(
            "cannot compile sluiced.exe's icon and version resource: {e}; install mingw-w64's windres (apt-get install gcc-mingw-w64-x86-64), or set WINDRES"
        );
        std::process::exit(1);
    }
}
