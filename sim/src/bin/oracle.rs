//! Prints the oracle's expected outcome for every NAT class pair and every preset pair:
//! `cargo run -p tern-sim --bin oracle`.
#![forbid(unsafe_code)]

fn main() {
    print!("{}", tern_sim::oracle::render_tables());
}
