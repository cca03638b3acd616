//! Interfaces that come and go in the container's namespace while its VM runs (`docker network
//! connect` and `disconnect`: dockerd moves a veth in or deletes it, and never calls the
//! runtime). A VM cannot take a new virtio-mmio device after boot, so it boots with spare ones
//! (`network::Spare`, held down by the agent); a thread watches the namespace and, once a new
//! Ethernet interface is up, joins it to a spare's tap and has the agent give the spare its MAC,
//! name, MTU, addresses and routes. When the interface goes away, the spare is one again.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use guest_protocol::{Request, Response};
use vmctl_netlink::{Changes, Netlink};

use super::agent::AgentConn;
use super::network::{self, Spare};
use crate::oci::log;
use crate::Error;

/// Changes come in bursts (a link, then its addresses, routes and state): this long without one
/// ends a burst.
const SETTLE: Duration = Duration::from_millis(300);

pub struct Hotplug {
    /// Host interfaces the VM booted with; never taken again.
    pub booted: Vec<u32>,
    pub spares: Vec<Spare>,
    pub own_dns: bool,
    pub vsock: PathBuf,
    pub redirected: Arc<Mutex<Vec<u32>>>,
}

/// A host interface joined to a spare after boot.
struct Joined {
    host_index: u32,
    name: String,
    spare: Spare,
}

impl Hotplug {
    /// Watches from a thread of its own, for as long as the monitor runs. The subscription is
    /// made here, so nothing that happens after this returns is missed.
    pub fn watch(self) -> Result<(), Error> {
        let changes = Changes::open()
            .map_err(|e| Error::io("cannot watch the container's network namespace", e))?;
        std::thread::Builder::new()
            .name("hotplug".into())
            .spawn(move || self.run(changes))
            .map_err(|e| Error::io("cannot start the network watcher", e))?;
        Ok(())
    }

    fn run(mut self, mut changes: Changes) {
        let mut joined = Vec::new();
        // Interfaces that could not be joined, so they are reported once.
        let mut refused = Vec::new();
        loop {
            match changes.wait(None) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    log::warn(&format!("network watcher stopped: {e}"));
                    return;
                }
            }
            while let Ok(true) = changes.wait(Some(SETTLE)) {}
            if let Err(e) = self.reconcile(&mut joined, &mut refused) {
                log::warn(&format!("network change not carried into the VM: {e}"));
            }
        }
    }

    fn reconcile(&mut self, joined: &mut Vec<Joined>, refused: &mut Vec<u32>) -> Result<(), Error> {
        let mut nl = Netlink::open().map_err(net)?;
        let links = nl.links().map_err(net)?;
        let present = |index: u32| links.iter().any(|l| l.index == index);
        refused.retain(|&i| present(i));
        for gone in extract(joined, |j| !present(j.host_index)) {
            network::part(&mut nl, gone.host_index, &gone.spare.tap, &self.redirected)?;
            self.call(Request::RemoveInterface {
                name: gone.name.clone(),
                spare: gone.spare.mac,
            })?;
            self.spares.push(gone.spare);
        }
        let new = links.iter().filter(|l| {
            network::carried(l)
                && l.up
                && !self.booted.contains(&l.index)
                && !refused.contains(&l.index)
                && !joined.iter().any(|j| j.host_index == l.index)
        });
        let new: Vec<_> = new.cloned().collect();
        if new.is_empty() {
            return Ok(());
        }
        let routes = nl.routes().map_err(net)?;
        for link in new {
            let Some(spare) = self.spares.pop() else {
                refused.push(link.index);
                return Err(Error::Unsupported(format!(
                    "{} appeared in the container's namespace, and the VM has no spare network \
                     device left for it",
                    link.name
                )));
            };
            let Some((interface, routes)) = network::describe(&mut nl, &link, &routes)? else {
                self.spares.push(spare);
                continue;
            };
            let added = network::join(
                &mut nl,
                link.index,
                &spare.tap,
                link.mtu,
                self.own_dns,
                &self.redirected,
            )
            .and_then(|()| {
                self.call(Request::AddInterface {
                    spare: spare.mac,
                    interface,
                    routes,
                })
            });
            if let Err(e) = added {
                let _ = network::part(&mut nl, link.index, &spare.tap, &self.redirected);
                let _ = nl.delete_ingress_qdisc(link.index);
                self.spares.push(spare);
                refused.push(link.index);
                return Err(e);
            }
            log::debug(&format!("{} joined the VM on {}", link.name, spare.tap));
            joined.push(Joined {
                host_index: link.index,
                name: link.name.clone(),
                spare,
            });
        }
        Ok(())
    }

    fn call(&self, request: Request) -> Result<(), Error> {
        match AgentConn::connect(&self.vsock)?.call(&request)? {
            Response::Ok => Ok(()),
            other => Err(Error::Agent(format!("unexpected answer: {other:?}"))),
        }
    }
}

/// Removes the elements for which `gone` holds from `v`, and returns them.
fn extract<T>(v: &mut Vec<T>, gone: impl Fn(&T) -> bool) -> Vec<T> {
    let (out, keep) = std::mem::take(v).into_iter().partition(|t| gone(t));
    *v = keep;
    out
}

fn net(e: vmctl_netlink::Error) -> Error {
    Error::Network(e.to_string())
}
