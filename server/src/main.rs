//! kv-server: runs one paxkv node.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("kv-server is being built; see the README")
}
