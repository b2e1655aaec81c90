//! The `rampart` command line.
fn main() {
    println!("rampart {}", rampart_event::VERSION);
}
