//! `${env:VAR}`, `${VAR}` and `${VAR:-default}` expansion, applied to the config text before
//! it is parsed. `$$` stands for a literal `$`. Comment lines are left alone, so a commented
//! out reference to an unset variable is not an error.

use super::ConfigError;

/// Expands references using `lookup` (the process environment in production).
pub fn expand(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        expand_line(line, index + 1, &lookup, &mut out)?;
    }
    Ok(out)
}

fn expand_line(
    line: &str,
    line_no: usize,
    lookup: &impl Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<(), ConfigError> {
    let fail = |message: String| ConfigError::Expand {
        line: line_no,
        message,
    };
    let mut rest = line;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| fail("unterminated \"${\": expected \"}\"".into()))?;
            let reference = &body[..end];
            out.push_str(&resolve(reference, lookup).map_err(fail)?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(())
}

fn resolve(reference: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let reference = reference.strip_prefix("env:").unwrap_or(reference);
    let (name, default) = match reference.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (reference, None),
    };
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "\"${{{reference}}}\" is not a valid variable reference"
        ));
    }
    // Like the shell's `:-`, an empty value also falls back to the default.
    match lookup(name) {
        Some(value) if !(value.is_empty() && default.is_some()) => Ok(value),
        _ => default.map(str::to_string).ok_or_else(|| {
            format!("environment variable {name} is not set (use ${{{name}:-default}} to give a default)")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("backend".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_all_forms() {
        let text =
            "a: ${HOST}:4317\nb: ${env:HOST}\nc: ${PORT:-4318}\nd: ${EMPTY:-x}\ne: $$HOME $x\n";
        assert_eq!(
            expand(text, env).unwrap(),
            "a: backend:4317\nb: backend\nc: 4318\nd: x\ne: $HOME $x\n"
        );
    }

    #[test]
    fn unset_variable_names_the_line() {
        let err = expand("a: 1\nb: ${NOPE}\n", env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: environment variable NOPE is not set (use ${NOPE:-default} to give a default)"
        );
    }

    #[test]
    fn comments_and_placeholders_are_left_alone() {
        let text = "# ${NOPE}\nh: \"{tenant}\"\n";
        assert_eq!(expand(text, env).unwrap(), text);
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(expand("a: ${HOST\n", env).is_err());
        assert!(expand("a: ${1X}\n", env).is_err());
    }
}
