//! The table tour in README.md must stay a valid, warning-free table.

use sluice_proxy::compile::compile;
use sluice_proxy::runtime::Runtime;
use sluice_proxy::table::from_yaml_str;

#[test]
fn readme_table_parses_and_compiles_cleanly() {
    let readme = include_str!("../../README.md");
    let start = readme.find("```yaml\n").expect("README has a yaml block") + "```yaml\n".len();
    let len = readme[start..].find("```").expect("yaml block is closed");
    let table = from_yaml_str(&readme[start..start + len]).unwrap_or_else(|e| panic!("{e}"));
    let compiled = compile(table, &Runtime::default()).unwrap();
    assert!(compiled.warnings.is_empty(), "{:?}", compiled.warnings);
    assert_eq!(compiled.listeners.len(), 1);
    assert_eq!(compiled.backends.len(), 2);
}
