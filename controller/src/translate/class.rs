//! Which Ingresses are ours: by IngressClass (controller name), by the legacy
//! `kubernetes.io/ingress.class` annotation, or by a default IngressClass.

use super::Options;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use std::collections::BTreeMap;
use std::sync::Arc;

const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

pub fn is_ours(
    ingress: &Ingress,
    classes: &BTreeMap<String, Arc<IngressClass>>,
    options: &Options,
) -> bool {
    // The legacy annotation, when present, decides (as other controllers do).
    if let Some(class) = ingress
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
    {
        return *class == options.ingress_class;
    }
    let class_name = ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref());
    match class_name {
        Some(name) => match classes.get(name) {
            Some(class) => controller_of(class) == Some(options.controller_name.as_str()),
            // No IngressClass object: our configured class name still counts.
            None => name == options.ingress_class,
        },
        None => classes
            .values()
            .any(|c| controller_of(c) == Some(options.controller_name.as_str()) && is_default(c)),
    }
}

fn controller_of(class: &IngressClass) -> Option<&str> {
    class.spec.as_ref().and_then(|s| s.controller.as_deref())
}

fn is_default(class: &IngressClass) -> bool {
    class
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
        .is_some_and(|v| v == "true")
}
