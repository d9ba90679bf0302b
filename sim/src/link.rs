//! One direction of a link, applied in this order (sans-io-anchors §4.3):
//! state (up / partitioned) → MTU → queue and bandwidth (tail drop) → loss (Bernoulli or
//! Gilbert–Elliott) → corruption → duplication → delay with jitter → reordering.
//!
//! Every host has an access link with one [`LinkConfig`] per direction (`up`: host → network,
//! `down`: network → host). Each direction draws from its own RNG stream.

use std::time::Duration;

use crate::rng::SimRng;
use crate::trace::DropReason;

/// IPv4 + UDP header bytes added to a UDP payload on the wire (for MTU and serialisation).
pub const UDP_IP_OVERHEAD: usize = 28;

/// Packet loss model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// No random loss.
    None,
    /// Each packet is lost independently with this probability.
    Bernoulli(f64),
    /// Two-state Markov chain evaluated once per packet: in the good state packets are lost
    /// with `loss_good`, in the bad state with `loss_bad`; `p` is the chance to go good → bad
    /// and `r` bad → good before each packet. Mean burst length in the bad state is `1 / r`.
    GilbertElliott {
        /// Good → bad transition probability per packet.
        p: f64,
        /// Bad → good transition probability per packet.
        r: f64,
        /// Loss probability in the good state.
        loss_good: f64,
        /// Loss probability in the bad state.
        loss_bad: f64,
    },
}

impl Loss {
    /// The long-run loss rate: for Gilbert–Elliott `π_good · loss_good + π_bad · loss_bad`
    /// with `π_bad = p / (p + r)`.
    pub fn mean_rate(&self) -> f64 {
        match *self {
            Loss::None => 0.0,
            Loss::Bernoulli(p) => p,
            Loss::GilbertElliott {
                p,
                r,
                loss_good,
                loss_bad,
            } => {
                if p + r == 0.0 {
                    return loss_good;
                }
                let bad = p / (p + r);
                (1.0 - bad) * loss_good + bad * loss_bad
            }
        }
    }
}

/// Explicit reordering: a packet is held back by `hold` (bypassing FIFO), so packets sent after
/// it overtake it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reorder {
    /// Fraction of packets held back.
    pub rate: f64,
    /// Extra delay of a held packet.
    pub hold: Duration,
}

/// The parameters of one direction of a link.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// IP MTU in bytes: a UDP payload larger than `mtu - 28` is dropped (no fragmentation,
    /// no ICMP: a black hole, as on many real paths).
    pub mtu: usize,
    /// Bits per second; `None` is infinitely fast (no serialisation delay, no queue).
    pub bandwidth_bps: Option<u64>,
    /// Bytes the queue in front of the bottleneck holds (including the packet being
    /// serialised); a packet that does not fit is tail-dropped. Ignored without bandwidth.
    pub queue_bytes: usize,
    /// Random loss.
    pub loss: Loss,
    /// Chance that a delivered packet has one random bit flipped.
    pub corrupt: f64,
    /// Chance that a packet is delivered twice (the copy gets its own delay draw).
    pub duplicate: f64,
    /// Fixed one-way propagation delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `[0, jitter]` per packet.
    pub jitter: Duration,
    /// If true, jitter never reorders: a packet is never delivered before one sent earlier
    /// (`deliver_at = max(deliver_at, last)`). If false, jitter reorders naturally.
    pub fifo: bool,
    /// Explicit reordering (held-back packets).
    pub reorder: Option<Reorder>,
}

impl Default for LinkConfig {
    /// An ideal link: MTU 1500, infinite bandwidth, no loss, no delay.
    fn default() -> Self {
        Self {
            mtu: 1500,
            bandwidth_bps: None,
            queue_bytes: 0,
            loss: Loss::None,
            corrupt: 0.0,
            duplicate: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            fifo: true,
            reorder: None,
        }
    }
}

/// Named link profiles (per direction; a host's access link uses the preset both ways).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinkPreset {
    /// No delay, no loss, infinite bandwidth.
    Ideal,
    /// Wired LAN: 1 Gbit/s, 0.2 ms ± 0.05 ms.
    Lan,
    /// Good Wi-Fi: 50 Mbit/s, 3 ms ± 2 ms, 0.2 % loss.
    Wifi,
    /// Poor Wi-Fi: 20 Mbit/s, 5 ms ± 5 ms with jitter reordering, bursty loss ≈ 2 %,
    /// 0.5 % duplication.
    WifiLossy,
    /// LTE-like: 10 Mbit/s, 35 ms ± 15 ms, bursty loss ≈ 1 %, 0.5 % reordering, deep queue.
    Cellular,
    /// GEO satellite: 20 Mbit/s, 300 ms ± 10 ms, 0.5 % loss.
    Satellite,
    /// Congested uplink: 1 Mbit/s with a 16 KB queue, 40 ms ± 20 ms reordering jitter, 3 %
    /// loss, 1 % duplication, 0.1 % corruption.
    Congested,
}

impl LinkPreset {
    /// Every preset.
    pub const ALL: [LinkPreset; 7] = [
        LinkPreset::Ideal,
        LinkPreset::Lan,
        LinkPreset::Wifi,
        LinkPreset::WifiLossy,
        LinkPreset::Cellular,
        LinkPreset::Satellite,
        LinkPreset::Congested,
    ];

    /// The preset's name (`wifi-lossy`, …).
    pub const fn name(self) -> &'static str {
        match self {
            LinkPreset::Ideal => "ideal",
            LinkPreset::Lan => "lan",
            LinkPreset::Wifi => "wifi",
            LinkPreset::WifiLossy => "wifi-lossy",
            LinkPreset::Cellular => "cellular",
            LinkPreset::Satellite => "satellite",
            LinkPreset::Congested => "congested",
        }
    }

    /// Looks a preset up by name; `None` if unknown.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The parameters of one direction.
    pub fn config(self) -> LinkConfig {
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        let base = LinkConfig::default();
        match self {
            LinkPreset::Ideal => base,
            LinkPreset::Lan => LinkConfig {
                bandwidth_bps: Some(1_000_000_000),
                queue_bytes: 256 * 1024,
                delay: us(200),
                jitter: us(50),
                ..base
            },
            LinkPreset::Wifi => LinkConfig {
                bandwidth_bps: Some(50_000_000),
                queue_bytes: 128 * 1024,
                loss: Loss::Bernoulli(0.002),
                delay: ms(3),
                jitter: ms(2),
                ..base
            },
            LinkPreset::WifiLossy => LinkConfig {
                bandwidth_bps: Some(20_000_000),
                queue_bytes: 128 * 1024,
                loss: Loss::GilbertElliott {
                    p: 0.01,
                    r: 0.3,
                    loss_good: 0.005,
                    loss_bad: 0.5,
                },
                duplicate: 0.005,
                delay: ms(5),
                jitter: ms(5),
                fifo: false,
                ..base
            },
            LinkPreset::Cellular => LinkConfig {
                mtu: 1420,
                bandwidth_bps: Some(10_000_000),
                queue_bytes: 512 * 1024,
                loss: Loss::GilbertElliott {
                    p: 0.005,
                    r: 0.4,
                    loss_good: 0.002,
                    loss_bad: 0.6,
                },
                delay: ms(35),
                jitter: ms(15),
                reorder: Some(Reorder {
                    rate: 0.005,
                    hold: ms(20),
                }),
                ..base
            },
            LinkPreset::Satellite => LinkConfig {
                bandwidth_bps: Some(20_000_000),
                queue_bytes: 1024 * 1024,
                loss: Loss::Bernoulli(0.005),
                delay: ms(300),
                jitter: ms(10),
                ..base
            },
            LinkPreset::Congested => LinkConfig {
                bandwidth_bps: Some(1_000_000),
                queue_bytes: 16 * 1024,
                loss: Loss::Bernoulli(0.03),
                corrupt: 0.001,
                duplicate: 0.01,
                delay: ms(40),
                jitter: ms(20),
                fifo: false,
                ..base
            },
        }
    }
}

/// Where a packet that passed the link goes: its delivery time, and the copy's if duplicated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Passage {
    /// When the packet reaches the far end.
    pub at: Duration,
    /// When the duplicate reaches the far end, if one was made.
    pub duplicate_at: Option<Duration>,
    /// True if a bit was flipped.
    pub corrupted: bool,
}

/// Counters of one link direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Packets offered to the link.
    pub offered: u64,
    /// Packets passed (not counting duplicates).
    pub passed: u64,
    /// Dropped because the link was partitioned.
    pub partitioned: u64,
    /// Dropped for exceeding the MTU.
    pub mtu: u64,
    /// Tail-dropped by the queue.
    pub queue_full: u64,
    /// Lost at random.
    pub lost: u64,
    /// Corrupted.
    pub corrupted: u64,
    /// Duplicated.
    pub duplicated: u64,
    /// Held back for reordering.
    pub held: u64,
    /// UDP payload bytes passed (not counting duplicates).
    pub passed_bytes: u64,
    /// UDP payload bytes lost at random.
    pub lost_bytes: u64,
    /// UDP payload bytes tail-dropped by the queue.
    pub queue_full_bytes: u64,
    /// UDP payload bytes dropped while partitioned.
    pub partitioned_bytes: u64,
    /// UDP payload bytes dropped for exceeding the MTU.
    pub mtu_bytes: u64,
}

impl LinkStats {
    /// UDP payload bytes the link dropped for any reason (partition, MTU, queue, loss).
    pub fn dropped_bytes(&self) -> u64 {
        self.lost_bytes + self.queue_full_bytes + self.partitioned_bytes + self.mtu_bytes
    }
}

/// The runtime state of one link direction.
#[derive(Clone, Debug)]
pub struct LinkState {
    config: LinkConfig,
    rng: SimRng,
    up: bool,
    busy_until: Duration,
    ge_bad: bool,
    last_delivery: Duration,
    stats: LinkStats,
}

impl LinkState {
    /// A link direction in its initial state (up, empty queue, Gilbert–Elliott good).
    pub fn new(config: LinkConfig, rng: SimRng) -> Self {
        Self {
            config,
            rng,
            up: true,
            busy_until: Duration::ZERO,
            ge_bad: false,
            last_delivery: Duration::ZERO,
            stats: LinkStats::default(),
        }
    }

    /// The parameters.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Replaces the parameters (queue and loss state are kept).
    pub fn set_config(&mut self, config: LinkConfig) {
        self.config = config;
    }

    /// Partitions (`false`) or heals (`true`) this direction.
    pub fn set_up(&mut self, up: bool) {
        self.up = up;
    }

    /// Whether the direction passes packets.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Counters.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Bytes waiting in (or being serialised by) the queue at `now`.
    pub fn backlog_bytes(&self, now: Duration) -> usize {
        match self.config.bandwidth_bps {
            Some(bps) if self.busy_until > now => {
                let secs = (self.busy_until - now).as_secs_f64();
                (secs * bps as f64 / 8.0).round() as usize
            }
            _ => 0,
        }
    }

    /// Offers a UDP payload to the link at `now`. Returns when it (and any duplicate)
    /// arrives, or why it was dropped. `bytes` may be corrupted in place.
    pub fn offer(&mut self, now: Duration, bytes: &mut [u8]) -> Result<Passage, DropReason> {
        self.stats.offered += 1;
        let c = &self.config;
        // 1. State.
        let len = bytes.len() as u64;
        if !self.up {
            self.stats.partitioned += 1;
            self.stats.partitioned_bytes += len;
            return Err(DropReason::Partitioned);
        }
        // 2. MTU.
        let wire = bytes.len() + UDP_IP_OVERHEAD;
        if wire > c.mtu {
            self.stats.mtu += 1;
            self.stats.mtu_bytes += len;
            return Err(DropReason::Mtu);
        }
        // 3. Queue and bandwidth.
        let mut depart = now;
        if let Some(bps) = c.bandwidth_bps {
            let backlog = self.backlog_bytes(now);
            if backlog + wire > c.queue_bytes {
                self.stats.queue_full += 1;
                self.stats.queue_full_bytes += len;
                return Err(DropReason::QueueFull);
            }
            let tx =
                Duration::from_nanos(((wire as u128 * 8 * 1_000_000_000) / bps as u128) as u64);
            depart = self.busy_until.max(now) + tx;
            self.busy_until = depart;
        }
        // 4. Loss.
        let lost = match c.loss {
            Loss::None => false,
            Loss::Bernoulli(p) => self.rng.chance(p),
            Loss::GilbertElliott {
                p,
                r,
                loss_good,
                loss_bad,
            } => {
                let flip = if self.ge_bad { r } else { p };
                if self.rng.chance(flip) {
                    self.ge_bad = !self.ge_bad;
                }
                self.rng
                    .chance(if self.ge_bad { loss_bad } else { loss_good })
            }
        };
        if lost {
            self.stats.lost += 1;
            self.stats.lost_bytes += len;
            return Err(DropReason::Loss);
        }
        // 5. Corruption: one random bit.
        let corrupted = !bytes.is_empty() && self.rng.chance(c.corrupt);
        if corrupted {
            let bit = self.rng.below(bytes.len() as u64 * 8);
            bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
            self.stats.corrupted += 1;
        }
        // 6. Duplication.
        let duplicate = self.rng.chance(c.duplicate);
        // 7 + 8. Delay, jitter, reordering.
        let at = self.schedule(depart);
        let duplicate_at = duplicate.then(|| {
            self.stats.duplicated += 1;
            self.schedule(depart)
        });
        self.stats.passed += 1;
        self.stats.passed_bytes += len;
        Ok(Passage {
            at,
            duplicate_at,
            corrupted,
        })
    }

    fn schedule(&mut self, depart: Duration) -> Duration {
        let c = &self.config;
        let mut at = depart + c.delay + self.rng.duration_up_to(c.jitter);
        if let Some(re) = c.reorder
            && self.rng.chance(re.rate)
        {
            // Held back: later packets overtake it, and it does not hold them back.
            self.stats.held += 1;
            return at + re.hold;
        }
        if c.fifo {
            at = at.max(self.last_delivery);
            self.last_delivery = at;
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_unique_names_and_round_trip() {
        for p in LinkPreset::ALL {
            assert_eq!(LinkPreset::from_name(p.name()), Some(p));
        }
        assert_eq!(LinkPreset::from_name("nope"), None);
    }

    #[test]
    fn gilbert_elliott_mean() {
        let l = Loss::GilbertElliott {
            p: 0.1,
            r: 0.3,
            loss_good: 0.0,
            loss_bad: 1.0,
        };
        assert!((l.mean_rate() - 0.25).abs() < 1e-12);
    }
}
