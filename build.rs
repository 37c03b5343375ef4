//! refinery embeds `migrations/` at compile time; tell cargo to rebuild the
//! crate when a migration file is added or changed.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
