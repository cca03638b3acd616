//! TEMPORARY: stands in for devices still being written, so the VMM's wiring compiles.
//! Each device's author deletes its `placeholder_device!` line; delete this file with the last.

#[macro_export]
macro_rules! placeholder_device {
    ($name:ident, $config:ty, $what:literal) => {
        pub struct $name {
            _never: std::convert::Infallible,
        }
        impl $name {
            pub fn new(_config: $config) -> $crate::Result<Self> {
                Err($crate::Error::Invalid(
                    concat!($what, " is not built yet").into(),
                ))
            }
        }
        impl $crate::virtio::VirtioDevice for $name {
            fn device_type(&self) -> u32 {
                match self._never {}
            }
            fn queue_max_sizes(&self) -> &[u16] {
                match self._never {}
            }
            fn queue_events(&self) -> &[vmm_sys_util::eventfd::EventFd] {
                match self._never {}
            }
            fn features(&self) -> u64 {
                match self._never {}
            }
            fn read_config(&self, _: u64, _: &mut [u8]) {
                match self._never {}
            }
            fn activate(
                &mut self,
                _: $crate::virtio::QueueContext,
            ) -> Result<(), $crate::virtio::ActivateError> {
                match self._never {}
            }
            fn reset(&mut self) {
                match self._never {}
            }
        }
        impl event_manager::MutEventSubscriber for $name {
            fn process(&mut self, _: event_manager::Events, _: &mut event_manager::EventOps) {
                match self._never {}
            }
            fn init(&mut self, _: &mut event_manager::EventOps) {
                match self._never {}
            }
        }
    };
}
