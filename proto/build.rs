//! Compiles the `.proto` schemas with protox (pure Rust), so no system `protoc` is needed.

fn main() {
    let files = ["proto/client.proto", "proto/peer.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"]).expect("the .proto schemas must compile");
    let mut config = prost_build::Config::new();
    // Ballots are totally ordered by (round, node); deriving Ord on the field order gives that.
    // (prost already derives Copy, Eq and Hash for a message of plain integers.)
    config.type_attribute("paxkv.peer.Ballot", "#[derive(PartialOrd, Ord)]");
    // Ordered maps: the same state encodes to the same bytes on every run.
    config.btree_map(["."]);
    config
        .compile_fds(descriptors)
        .expect("prost code generation must succeed");
}
