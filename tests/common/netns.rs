//! Network namespaces as hosts on a private switch, for tests that need
//! several machines: clients that refuse loopback peers (Transmission), one
//! address per peer (trackers, DHT, LSD), links to shape with `tc`.
//!
//! [`Netns::new`] makes a "switch" namespace holding a bridge and N host
//! namespaces, each with a veth pair (`eth0` inside the host, `pN` on the
//! bridge), `lo` up, IPv6 off, the address `10.77.S.(N+1)/24` and a
//! multicast route (224.0.0.0/4) on `eth0`. [`Netns::with_ipv6`] keeps
//! IPv6 on in the hosts and gives each also `fd77:S::(N+1)/64` (a ULA
//! prefix, ours; added with `nodad`, so usable at once; the kernel routes
//! IPv6 multicast, `ff00::/8`, on `eth0` by itself). The bridge floods multicast
//! to every host (no snooping), so LSD announces reach them all. The
//! subnet `S` is claimed across processes by creating the switch namespace
//! `shoal-sw-S`: `ip netns add` fails when it exists, so two tests (threads
//! or processes) never share a subnet. Nothing here touches the root
//! namespace's links or routes, and the hosts have no route out.
//!
//! Dropping the guard deletes every namespace it made (their veth ends go
//! with them), also when the test panics. A namespace left by a test that
//! was killed is reclaimed by the next claim of its subnet once the PID
//! recorded for it is gone.
//!
//! Programs run inside with [`Netns::exec_prefix`] (`ip netns exec NAME`,
//! which execs, so a PID stays the program's); the test process itself
//! opens sockets inside with [`Netns::in_host`], which runs a closure on a
//! thread moved into the namespace (a socket keeps its namespace for life).

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One host: its namespace and its addresses on the switch.
#[derive(Debug, Clone)]
pub struct Host {
    pub ns: String,
    pub ip: Ipv4Addr,
    /// With [`Netns::with_ipv6`] only.
    pub ip6: Option<Ipv6Addr>,
}

/// The guard: a switch namespace, its bridge, and the hosts on it.
pub struct Netns {
    subnet: u8,
    switch: String,
    hosts: Vec<Host>,
}

/// Where the owner PID of each claimed subnet is written.
const OWNERS: &str = "/tmp/shoal-netns-owners";

/// Runs `ip ARGS`; an error with its stderr when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `ip netns exec NS ARGS` and returns its stdout, panicking with
/// stderr if it fails.
fn ns_exec(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("ip netns exec {ns} {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "ip netns exec {ns} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether namespaces can be made here (root, `ip netns` works). When not,
/// says so loudly and returns false, or panics under `CI=true`.
pub fn available(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let why = if !root {
        Some("not running as root")
    } else if !super::process::tool_works("ip", &["netns", "list"]) {
        Some("`ip netns` does not work (iproute2 missing?)")
    } else {
        None
    };
    skip_unless(test, why)
}

/// Whether namespaces with IPv6 can be made here: [`available`], and a
/// kernel with IPv6. When not, says so or panics as [`available`] does.
pub fn available_ipv6(test: &str) -> bool {
    if !available(test) {
        return false;
    }
    let why = (!std::path::Path::new("/proc/sys/net/ipv6").exists())
        .then_some("the kernel has no IPv6 (/proc/sys/net/ipv6 is missing)");
    skip_unless(test, why)
}

/// True if there is no reason `why` to skip; otherwise SKIPPED on stderr,
/// or a panic under `CI=true`.
fn skip_unless(test: &str, why: Option<&str>) -> bool {
    let Some(why) = why else { return true };
    if super::in_ci() {
        panic!("{test}: network namespaces unavailable ({why}), and CI=true: that is a failure");
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: {test}: network namespaces unavailable ({why}) ***\n"
    );
    false
}

fn owner_file(subnet: u8) -> PathBuf {
    PathBuf::from(OWNERS).join(subnet.to_string())
}

/// Whether the subnet's namespaces belong to a process that is gone.
fn stale(subnet: u8) -> bool {
    match std::fs::read_to_string(owner_file(subnet)) {
        Ok(pid) => !PathBuf::from(format!("/proc/{}", pid.trim())).exists(),
        // Claimed a moment ago, owner not yet written: not stale.
        Err(_) => false,
    }
}

/// Deletes every namespace named `shoal-*-S` / `shoal-sw-S` (a dead
/// owner's leftovers).
fn reclaim(subnet: u8) {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let list = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    for line in list.unwrap_or_default().lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let suffix = format!("-{subnet}");
        if name.starts_with("shoal-") && name.ends_with(&suffix) && name.len() < 20 {
            let _ = ip(&["netns", "del", name]);
        }
    }
    let _ = std::fs::remove_file(owner_file(subnet));
}

impl Netns {
    /// `n` hosts (at most 250) on a new switch, IPv4 only. Panics if the
    /// setup fails (call [`available`] first); whatever was made is deleted.
    pub fn new(n: usize) -> Netns {
        Netns::make(n, false)
    }

    /// As [`Netns::new`], with IPv6 on in the hosts and an address each
    /// (`fd77:S::(N+1)`, [`Host::ip6`]). Call [`available_ipv6`] first.
    pub fn with_ipv6(n: usize) -> Netns {
        Netns::make(n, true)
    }

    fn make(n: usize, ipv6: bool) -> Netns {
        assert!(n > 0 && n <= 250, "1 to 250 hosts, not {n}");
        std::fs::create_dir_all(OWNERS).expect("create the netns owners dir");
        // Start at a per-process offset so concurrent processes rarely
        // contend for the same subnet.
        let start = std::process::id() as usize % 256;
        let subnet = (0..256)
            .map(|i| ((start + i) % 256) as u8)
            .find(|&s| {
                let name = format!("shoal-sw-{s}");
                if ip(&["netns", "add", &name]).is_ok() {
                    let _ = std::fs::write(owner_file(s), std::process::id().to_string());
                    return true;
                }
                if stale(s) {
                    reclaim(s);
                    if ip(&["netns", "add", &name]).is_ok() {
                        let _ = std::fs::write(owner_file(s), std::process::id().to_string());
                        return true;
                    }
                }
                false
            })
            .expect("every 10.77.S.0/24 subnet is taken");
        let mut me = Netns {
            subnet,
            switch: format!("shoal-sw-{subnet}"),
            hosts: Vec::new(),
        };
        me.setup(n, ipv6);
        me
    }

    fn setup(&mut self, n: usize, ipv6: bool) {
        let sw = self.switch.clone();
        ns_exec(&sw, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns_exec(
            &sw,
            &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
        );
        // No multicast snooping: the bridge floods multicast (local
        // service discovery) to every host, like a plain switch.
        ip(&[
            "-n",
            &sw,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])
        .unwrap();
        ip(&["-n", &sw, "link", "set", "br0", "up"]).unwrap();
        ip(&["-n", &sw, "link", "set", "lo", "up"]).unwrap();
        for i in 0..n {
            let ns = format!("shoal-h{i}-{}", self.subnet);
            let hostip = Ipv4Addr::new(10, 77, self.subnet, i as u8 + 1);
            let hostip6 = ipv6
                .then(|| Ipv6Addr::new(0xfd77, self.subnet.into(), 0, 0, 0, 0, 0, i as u16 + 1));
            ip(&["netns", "add", &ns]).unwrap();
            // Pushed before configuring, so that Drop deletes it if a step fails.
            self.hosts.push(Host {
                ns: ns.clone(),
                ip: hostip,
                ip6: hostip6,
            });
            // Set either way: a new namespace need not start with IPv6 on.
            let off = if ipv6 { "0" } else { "1" };
            for scope in ["all", "default"] {
                let setting = format!("net.ipv6.conf.{scope}.disable_ipv6={off}");
                ns_exec(&ns, &["sysctl", "-qw", &setting]);
            }
            let port = format!("p{i}");
            // Both ends made straight in their namespaces: no name is ever
            // taken in the root namespace.
            ip(&[
                "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &sw,
            ])
            .unwrap();
            ip(&["-n", &sw, "link", "set", &port, "master", "br0"]).unwrap();
            ip(&["-n", &sw, "link", "set", &port, "up"]).unwrap();
            ip(&["-n", &ns, "link", "set", "lo", "up"]).unwrap();
            let cidr = format!("{hostip}/24");
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"]).unwrap();
            if let Some(ip6) = hostip6 {
                // No duplicate address detection: usable at once, not
                // "tentative" for a second (nobody else has it).
                let cidr6 = format!("{ip6}/64");
                ip(&["-n", &ns, "addr", "add", &cidr6, "dev", "eth0", "nodad"]).unwrap();
            }
            ip(&["-n", &ns, "link", "set", "eth0", "up"]).unwrap();
            // Multicast (local service discovery) goes out on the switch;
            // without a route it has nowhere to go.
            ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]).unwrap();
        }
    }

    /// The subnet's third octet: hosts are `10.77.S.1` onwards.
    pub fn subnet(&self) -> u8 {
        self.subnet
    }

    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// `ip netns exec NS`: put it before a program to run it in host `i`.
    pub fn exec_prefix(&self, i: usize) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.hosts[i].ns.clone(),
        ]
    }

    /// Runs `f` on a thread inside host `i`'s namespace (sockets it opens
    /// belong to that host) and returns what it returns.
    pub fn in_host<T: Send + 'static>(
        &self,
        i: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let path = format!("/run/netns/{}", self.hosts[i].ns);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            use std::os::fd::AsRawFd;
            // SAFETY: setns on a valid open namespace fd moves only this
            // thread (a fresh one that ends with `f`) into that namespace.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// A TCP connection from host `i` to `addr` (with a 5 s connect
    /// deadline), or `None` if nothing answers there.
    pub fn connect(&self, i: usize, addr: SocketAddr) -> Option<TcpStream> {
        self.in_host(i, move || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for h in &self.hosts {
            if let Err(e) = ip(&["netns", "del", &h.ns]) {
                eprintln!("netns cleanup: {e}");
            }
        }
        if let Err(e) = ip(&["netns", "del", &self.switch]) {
            eprintln!("netns cleanup: {e}");
        }
        let _ = std::fs::remove_file(owner_file(self.subnet));
    }
}
