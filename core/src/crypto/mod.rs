//! Cryptography: the Noise handshake (`handshake`), the data-key schedule with key updates
//! (`keys`), in-place packet protection (`aead`), replay protection (`replay`) and stateless
//! cookies plus mac1 (`cookie`) and stateless reset tokens (`reset`).

pub mod aead;
pub mod cookie;
pub mod handshake;
pub mod keys;
pub mod replay;
pub mod reset;

pub use aead::{AeadKind, PacketKey};
pub use handshake::{HandshakeCipher, Pattern, Suite};
pub use replay::ReplayWindow;
