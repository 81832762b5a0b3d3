//! `migrate` embeds `schema/` at compile time (refinery's
//! `embed_migrations!`), which cargo cannot see: without this, a migration
//! added or edited alone would not reach the binary until some Rust file of
//! this crate changed.
fn main() {
    println!("cargo:rerun-if-changed=../../schema");
}
