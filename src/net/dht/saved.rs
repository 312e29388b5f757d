//! The nodes of the routing table, saved at exit and used to bootstrap
//! the next run: compact node info (26 bytes a node), written to a
//! temporary name and renamed, so a crash leaves the old file or the new
//! one, never half of one.

use crate::proto::krpc::{self, NodeInfo};
use std::net::SocketAddrV4;
use std::path::Path;

/// Nodes read from the file at most.
pub const MAX_SAVED: usize = 256;

/// The saved nodes' addresses; nothing if the file is missing or bad.
pub fn load(path: &Path) -> Vec<SocketAddrV4> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let usable = bytes.len().min(MAX_SAVED * krpc::NODE_INFO_LEN);
    let usable = usable - usable % krpc::NODE_INFO_LEN;
    krpc::decode_nodes(&bytes[..usable])
        .unwrap_or_default()
        .into_iter()
        .map(|n| n.addr)
        .collect()
}

pub fn save(path: &Path, nodes: &[NodeInfo]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let nodes = &nodes[..nodes.len().min(MAX_SAVED)];
    std::fs::write(&tmp, krpc::encode_nodes(nodes))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testutil::TempDir;

    #[test]
    fn saved_nodes_load_back_and_bad_files_load_nothing() {
        let dir = TempDir::new("dht-saved");
        let path = dir.0.join("state/dht.nodes");
        assert!(load(&path).is_empty());
        let node = NodeInfo {
            id: [7; 20],
            addr: "10.1.2.3:6881".parse().unwrap(),
        };
        save(&path, &[node, node]).unwrap();
        assert_eq!(load(&path), vec![node.addr, node.addr]);
        std::fs::write(&path, [1, 2, 3]).unwrap();
        assert!(load(&path).is_empty());
    }
}
