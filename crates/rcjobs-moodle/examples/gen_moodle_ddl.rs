//! Regenerates `sql/moodle_schema.sql` from the XMLDB copies in `xmldb/`.
//!
//! `cargo run -p rcjobs-moodle --example gen_moodle_ddl`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |f: &str| std::fs::read_to_string(dir.join("xmldb").join(f));
    let sql = rcjobs_moodle::schema::generate(
        &read("lib_db_install.xml")?,
        &read("mod_rocketchat_install.xml")?,
        &read("tool_recyclebin_install.xml")?,
    )?;
    std::fs::write(dir.join("sql/moodle_schema.sql"), sql)?;
    println!("wrote sql/moodle_schema.sql");
    Ok(())
}
