//! A userspace IOAPIC for KVM's split irqchip (LAPICs in the kernel, the IOAPIC here).
//!
//! Each pin's redirection entry becomes an MSI route for the GSI of the same number, so a device
//! raising its irqfd reaches the LAPIC without leaving the kernel; the VMM only steps in when the
//! guest reprograms an entry. All our interrupt sources are edge-triggered (ISA serial, virtio-mmio
//! irqfds), so pins are routed as edge whatever the guest programs and no EOI handling is needed.
//! A masked pin has no route: an edge arriving while masked is dropped, as on real hardware.

use crate::bus::BusDevice;

pub const IOAPIC_SIZE: u64 = 0x1000;
pub const NUM_PINS: usize = 24;
const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const EOI: u64 = 0x40;
const REG_ID: u32 = 0x00;
const REG_VERSION: u32 = 0x01;
const REG_ARBITRATION: u32 = 0x02;
const REG_REDIR_BASE: u32 = 0x10;
/// Version 0x20 (with the EOI register), highest redirection entry 23.
const VERSION: u32 = 0x20 | ((NUM_PINS as u32 - 1) << 16);
const REDIR_MASKED: u64 = 1 << 16;
/// Bits the guest may write: vector, delivery mode, destination mode, polarity, trigger mode,
/// mask, destination. Delivery status (12) and remote IRR (14) are read-only.
const REDIR_WRITABLE: u64 = 0xff00_0000_0001_afff;
const MSI_ADDRESS_BASE: u32 = 0xfee0_0000;

/// An MSI message: what the LAPICs see when a pin fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msi {
    pub address: u32,
    pub data: u32,
}

/// Installs the routes of all unmasked pins (GSI = pin); the VMM implements it with
/// KVM_SET_GSI_ROUTING.
pub trait MsiRouter: Send {
    fn set_routes(&self, routes: &[(u32, Msi)]) -> std::io::Result<()>;
}

pub struct IoApic {
    id: u32,
    select: u32,
    redirection: [u64; NUM_PINS],
    router: Box<dyn MsiRouter>,
    /// The last routing the router accepted, to skip no-op updates.
    installed: Vec<(u32, Msi)>,
}

impl IoApic {
    pub fn new(id: u8, router: Box<dyn MsiRouter>) -> Self {
        IoApic {
            id: u32::from(id) << 24,
            select: 0,
            redirection: [REDIR_MASKED; NUM_PINS],
            router,
            installed: Vec::new(),
        }
    }

    /// The MSI a redirection entry sends: fixed/lowest-priority/NMI/INIT/ExtINT delivery mode and
    /// the destination carried over, always as an edge.
    pub fn msi_for(entry: u64) -> Msi {
        let vector = (entry & 0xff) as u32;
        let delivery_mode = ((entry >> 8) & 0x7) as u32;
        let logical = ((entry >> 11) & 1) as u32;
        let dest = ((entry >> 56) & 0xff) as u32;
        Msi {
            address: MSI_ADDRESS_BASE | (dest << 12) | (logical << 2),
            data: vector | (delivery_mode << 8),
        }
    }

    fn routes(&self) -> Vec<(u32, Msi)> {
        self.redirection
            .iter()
            .enumerate()
            .filter(|(_, e)| *e & REDIR_MASKED == 0)
            .map(|(pin, e)| (pin as u32, Self::msi_for(*e)))
            .collect()
    }

    fn update_routes(&mut self) {
        let routes = self.routes();
        if routes != self.installed && self.router.set_routes(&routes).is_ok() {
            self.installed = routes;
        }
    }

    fn read_register(&self) -> u32 {
        match self.select {
            REG_ID => self.id,
            REG_VERSION => VERSION,
            REG_ARBITRATION => self.id,
            r if r >= REG_REDIR_BASE => {
                let index = ((r - REG_REDIR_BASE) / 2) as usize;
                match self.redirection.get(index) {
                    Some(e) if r % 2 == 0 => *e as u32,
                    Some(e) => (*e >> 32) as u32,
                    None => 0,
                }
            }
            _ => 0,
        }
    }

    fn write_register(&mut self, value: u32) {
        match self.select {
            REG_ID => self.id = value & 0x0f00_0000,
            r if r >= REG_REDIR_BASE => {
                let index = ((r - REG_REDIR_BASE) / 2) as usize;
                let Some(entry) = self.redirection.get_mut(index) else {
                    return;
                };
                let (mask, shifted) = if r % 2 == 0 {
                    (0xffff_ffffu64, u64::from(value))
                } else {
                    (0xffff_ffff_0000_0000u64, u64::from(value) << 32)
                };
                let writable = mask & REDIR_WRITABLE;
                *entry = (*entry & !writable) | (shifted & writable);
                self.update_routes();
            }
            _ => {}
        }
    }
}

impl BusDevice for IoApic {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset {
            IOREGSEL => self.select,
            IOWIN => self.read_register(),
            _ => 0,
        };
        let bytes = value.to_le_bytes();
        let n = data.len().min(4);
        data.fill(0);
        data[..n].copy_from_slice(&bytes[..n]);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return;
        };
        let value = u32::from_le_bytes(bytes);
        match offset {
            IOREGSEL => self.select = value & 0xff,
            IOWIN => self.write_register(value),
            // Edge-only pins never set remote IRR, so an EOI has nothing to clear.
            EOI => {}
            _ => {}
        }
    }
}

/// Ports of the 8259 PICs (0x20-0x21, 0xa0-0xa1). The machine has none; these read 0 so that
/// Linux's probe (write 0xff to the mask, read it back) finds no PIC and uses no legacy IRQs, as
/// on QEMU microvm with pic=off.
pub struct AbsentPic;

impl BusDevice for AbsentPic {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Routes = Vec<(u32, Msi)>;

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Routes>>>);
    impl MsiRouter for Recorder {
        fn set_routes(&self, routes: &[(u32, Msi)]) -> std::io::Result<()> {
            self.0.lock().unwrap().push(routes.to_vec());
            Ok(())
        }
    }

    fn write(io: &mut IoApic, offset: u64, value: u32) {
        io.write(offset, &value.to_le_bytes());
    }

    fn read(io: &mut IoApic, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        io.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn program(io: &mut IoApic, pin: u32, low: u32, high: u32) {
        write(io, IOREGSEL, REG_REDIR_BASE + 2 * pin + 1);
        write(io, IOWIN, high);
        write(io, IOREGSEL, REG_REDIR_BASE + 2 * pin);
        write(io, IOWIN, low);
    }

    #[test]
    fn version_reports_24_pins() {
        let mut io = IoApic::new(1, Box::new(Recorder::default()));
        write(&mut io, IOREGSEL, REG_VERSION);
        assert_eq!(read(&mut io, IOWIN), 0x0017_0020);
        write(&mut io, IOREGSEL, REG_ID);
        assert_eq!(read(&mut io, IOWIN), 1 << 24);
    }

    #[test]
    fn unmasking_a_pin_installs_its_msi_route() {
        let rec = Recorder::default();
        let mut io = IoApic::new(1, Box::new(rec.clone()));
        program(&mut io, 4, 0x0000_0031, 0x0200_0000);
        let calls = rec.0.lock().unwrap();
        let last = calls.last().unwrap();
        assert_eq!(
            last,
            &vec![(
                4,
                Msi {
                    address: 0xfee0_2000,
                    data: 0x31
                }
            )]
        );
    }

    #[test]
    fn masking_removes_the_route_and_level_is_routed_as_edge() {
        let rec = Recorder::default();
        let mut io = IoApic::new(1, Box::new(rec.clone()));
        program(&mut io, 5, 0x0000_a041, 0);
        assert_eq!(rec.0.lock().unwrap().last().unwrap()[0].1.data, 0x41);
        program(&mut io, 5, 0x0001_0041, 0);
        assert!(rec.0.lock().unwrap().last().unwrap().is_empty());
    }

    #[test]
    fn read_only_bits_and_bad_selects_are_harmless() {
        let mut io = IoApic::new(1, Box::new(Recorder::default()));
        program(&mut io, 0, 0xffff_ffff, 0xffff_ffff);
        write(&mut io, IOREGSEL, REG_REDIR_BASE);
        assert_eq!(read(&mut io, IOWIN) & (1 << 12 | 1 << 14), 0);
        write(&mut io, IOREGSEL, 0xff);
        write(&mut io, IOWIN, 1);
        assert_eq!(read(&mut io, IOWIN), 0);
        io.write(IOWIN, &[1, 2]);
        let mut odd = [0u8; 8];
        io.read(IOWIN, &mut odd);
    }
}
