//! Cryptography: the Noise handshake (`handshake`), the data-key schedule with key updates
//! (`keys`), in-place packet protection (`aead`), replay protection (`replay`) and stateless
//! cookies plus mac1 (`cookie`), stateless reset tokens (`reset`) and the key material
//! precomputed off the handshake's critical path (`precompute`).

pub mod aead;
pub mod cookie;
pub mod handshake;
pub mod keys;
pub(crate) mod precompute;
pub mod replay;
pub mod reset;

pub use aead::{AeadKind, PacketKey};
pub use handshake::{HandshakeCipher, Pattern, Suite};
pub use replay::ReplayWindow;
