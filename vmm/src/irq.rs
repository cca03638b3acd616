//! Interrupt routing for the split irqchip: the userspace IOAPIC's pins become MSI routes.

use std::sync::Arc;

use devices::ioapic::{Msi, MsiRouter};
use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_msi, KvmIrqRouting, KVM_IRQ_ROUTING_MSI,
};
use kvm_ioctls::VmFd;

/// Installs IOAPIC routes with KVM_SET_GSI_ROUTING (GSI = IOAPIC pin).
pub struct KvmMsiRouter(pub Arc<VmFd>);

impl MsiRouter for KvmMsiRouter {
    fn set_routes(&self, routes: &[(u32, Msi)]) -> std::io::Result<()> {
        let entries: Vec<kvm_irq_routing_entry> = routes
            .iter()
            .map(|&(gsi, msi)| {
                let mut e = kvm_irq_routing_entry {
                    gsi,
                    type_: KVM_IRQ_ROUTING_MSI,
                    ..Default::default()
                };
                e.u.msi = kvm_irq_routing_msi {
                    address_lo: msi.address,
                    address_hi: 0,
                    data: msi.data,
                    ..Default::default()
                };
                e
            })
            .collect();
        let table = KvmIrqRouting::from_entries(&entries)
            .map_err(|_| std::io::Error::other("too many interrupt routes"))?;
        self.0
            .set_gsi_routing(&table)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }
}
