//! OCSF classification of Rampart's records.
//!
//! OCSF names every record by a class (`class_uid`), a category (`category_uid`) and an activity
//! within the class (`activity_id`); `type_uid` is `class_uid * 100 + activity_id`. Where OCSF has
//! no activity for what happened (a fork, a namespace change), the activity is 99 "Other" and
//! `activity_name` says what it was.

use serde::Serialize;

/// The OCSF schema version the JSON follows.
pub const OCSF_VERSION: &str = "1.3.0";
/// `metadata.product.name` of every record.
pub const PRODUCT_NAME: &str = "Rampart";

/// Where a record sits in the OCSF taxonomy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OcsfClass {
    pub class_uid: u32,
    pub class_name: &'static str,
    pub category_uid: u32,
    pub category_name: &'static str,
    pub activity_id: u32,
    pub activity_name: &'static str,
}

impl OcsfClass {
    /// `class_uid * 100 + activity_id`, as OCSF defines it.
    pub fn type_uid(&self) -> u64 {
        u64::from(self.class_uid) * 100 + u64::from(self.activity_id)
    }

    pub(crate) const fn new(class_uid: u32, activity_id: u32, activity_name: &'static str) -> Self {
        let (class_name, category_uid, category_name) = match class_uid {
            1001 => ("File System Activity", 1, "System Activity"),
            1002 => ("Kernel Extension Activity", 1, "System Activity"),
            1003 => ("Kernel Activity", 1, "System Activity"),
            1004 => ("Memory Activity", 1, "System Activity"),
            1007 => ("Process Activity", 1, "System Activity"),
            2002 => ("Vulnerability Finding", 2, "Findings"),
            2003 => ("Compliance Finding", 2, "Findings"),
            2004 => ("Detection Finding", 2, "Findings"),
            3002 => ("Authentication", 3, "Identity & Access Management"),
            4001 => ("Network Activity", 4, "Network Activity"),
            4003 => ("DNS Activity", 4, "Network Activity"),
            5001 => ("Device Inventory Info", 5, "Discovery"),
            6002 => ("Application Lifecycle", 6, "Application Activity"),
            7001 => ("Remediation Activity", 7, "Remediation"),
            _ => ("Base Event", 0, "Uncategorized"),
        };
        OcsfClass {
            class_uid,
            class_name,
            category_uid,
            category_name,
            activity_id,
            activity_name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_uid_is_class_times_hundred_plus_activity() {
        let c = OcsfClass::new(1007, 1, "Launch");
        assert_eq!(c.type_uid(), 100_701);
        assert_eq!(c.category_uid, 1);
        assert_eq!(c.class_name, "Process Activity");
    }
}
