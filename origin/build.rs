//! Generates the Kafka record types from `proto/` with prost. protox compiles
//! the `.proto` in Rust, so building needs no `protoc` on the machine.

fn main() {
    let protos = ["proto/attune/record/v1/record.proto"];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(protos, ["proto"]).expect("proto/ compiles");
    prost_build::Config::new()
        // The attributes are ordered everywhere else too.
        .btree_map(["."])
        .compile_fds(descriptors)
        .expect("prost generates the record types");
}
