//! The words every layer uses about failures: who has to act on one ([`ErrorClass`]) and how
//! an error's cause chain reads ([`causes`]).

/// Who has to act on a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The test definition or the guest is wrong: reported as FAIL and never retried.
    Fail,
    /// The machine is wrong (QEMU missing, KVM broken, a download failed): INFRA, retried
    /// per `VMHARNESS_INFRA_RETRIES`.
    Infra,
    /// An input cannot be obtained here (offline, an `env:` variable unset): UNAVAILABLE, a
    /// skip with its reason; with `VMHARNESS_REQUIRE_ARTIFACTS=1` it is [`ErrorClass::Infra`].
    Unavailable,
}

impl ErrorClass {
    /// The outcome label: FAIL, INFRA or UNAVAILABLE.
    pub fn label(self) -> &'static str {
        match self {
            ErrorClass::Fail => "FAIL",
            ErrorClass::Infra => "INFRA",
            ErrorClass::Unavailable => "UNAVAILABLE",
        }
    }
}

/// An error with its causes on one line, `message: cause: cause`.
pub(crate) fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    for cause in causes(error) {
        text.push_str(": ");
        text.push_str(&cause);
    }
    text
}

/// The causes below an error, outermost first, without repeating a message a transparent
/// wrapper already showed.
pub fn causes(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut causes: Vec<String> = Vec::new();
    let mut last = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if text != last && !last.ends_with(&text) {
            causes.push(text.clone());
        }
        last = text;
        next = cause.source();
    }
    causes
}
