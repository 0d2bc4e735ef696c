//! Kubernetes name rules (apimachinery `validation`), written out so no regex is compiled per call.

/// RFC 1123 label: object names of Services' ports, namespaces, label-like names.
pub fn dns1123_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 63 {
        return Err(format!("must be at most 63 characters (is {})", s.len()));
    }
    if !label_chars(s) {
        return Err(format!(
            "{s:?} is not a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// RFC 1123 subdomain: names of most objects (Deployments, Canaries, ConfigMaps).
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 253 {
        return Err(format!("must be at most 253 characters (is {})", s.len()));
    }
    if !s.split('.').all(label_chars) {
        return Err(format!(
            "{s:?} is not a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// RFC 1035 label: Service names, which must also start with a letter.
pub fn dns1035_label(s: &str) -> Result<(), String> {
    dns1123_label(s)?;
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!(
            "{s:?} is not a DNS-1035 label: a Service name must start with a lowercase letter"
        ));
    }
    Ok(())
}

fn label_chars(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
}

/// IANA service name: what a named container port (and so a named `targetPort`) may be called.
pub fn iana_svc_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a port name: at most 15 lowercase letters, digits and single '-', with at least one letter"
        ))
    }
}

/// Label key: optional DNS subdomain prefix and `/`, then a name of up to 63 characters.
pub fn label_key(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix {
        dns1123_subdomain(p).map_err(|e| format!("label key prefix: {e}"))?;
    }
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if name_ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not a valid label key"))
    }
}

/// Label value: empty, or up to 63 alphanumerics with `-_.` inside.
pub fn label_value(s: &str) -> Result<(), String> {
    let ok = s.is_empty()
        || (s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')));
    if ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not a valid label value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        assert!(dns1123_label("podinfo").is_ok());
        assert!(dns1123_label("Podinfo").is_err());
        assert!(dns1123_label("-a").is_err());
        assert!(dns1123_label(&"a".repeat(64)).is_err());
        assert!(dns1123_subdomain("a.b-c.d").is_ok());
        assert!(dns1123_subdomain("a..b").is_err());
        assert!(dns1035_label("1abc").is_err());
        assert!(dns1035_label("abc1").is_ok());
    }

    #[test]
    fn port_names_and_labels() {
        assert!(iana_svc_name("http").is_ok());
        assert!(iana_svc_name("8080").is_err());
        assert!(iana_svc_name("http--x").is_err());
        assert!(label_key("app.kubernetes.io/name").is_ok());
        assert!(label_key("node-type").is_ok());
        assert!(label_key("bad key").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("spot").is_ok());
        assert!(label_value("-x").is_err());
    }
}
