//! Compiles /proto/*.proto with protox (pure Rust), so a fresh machine needs no `protoc`.

use std::fmt::Write;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = ["cluster.proto", "admin.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let descriptors = protox::compile(files, [&root])?;
    prost_build::Config::new()
        .service_generator(Box::new(RpcMarkers))
        .compile_fds(descriptors)?;
    Ok(())
}

/// Emits, per service, a module with one marker type per rpc implementing `crate::Rpc`, so the
/// HTTP path and the request/reply pairing come from the .proto and client and server cannot
/// disagree about them.
struct RpcMarkers;

impl prost_build::ServiceGenerator for RpcMarkers {
    fn generate(&mut self, service: prost_build::Service, buf: &mut String) {
        let module = snake(&service.proto_name);
        let _ = writeln!(buf, "/// The rpcs of `{}`.", service.proto_name);
        let _ = writeln!(buf, "pub mod {module} {{");
        for m in &service.methods {
            let path = format!(
                "/{}.{}/{}",
                service.package, service.proto_name, m.proto_name
            );
            let _ = writeln!(
                buf,
                "    /// `POST {path}`\n    #[derive(Debug, Clone, Copy)]\n    pub struct {name};\n    \
                 impl crate::Rpc for {name} {{\n        type Request = super::{input};\n        \
                 type Reply = super::{output};\n        const PATH: &'static str = \"{path}\";\n    }}",
                name = m.proto_name,
                input = m.input_type,
                output = m.output_type,
            );
        }
        let _ = writeln!(buf, "}}");
    }
}

fn snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
