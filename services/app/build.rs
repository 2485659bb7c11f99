//! sqlx::migrate! embeds the migrations folder at compile time; cargo must rebuild the app
//! when a migration is added or changed (sqlx's documented build script).
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
