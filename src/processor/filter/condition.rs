//! The common cases of the OpenTelemetry Collector's condition syntax (OTTL) that the
//! `filter` processor accepts: comparisons of a path with a literal, `IsMatch(path, "re")`,
//! `and`, `or`, `not` and parentheses.
//!
//! Paths: `name`, `kind`, `status.code`, `severity_number`, `severity_text`, `body`,
//! `attributes["k"]`, `resource.attributes["k"]`, `instrumentation_scope.name`,
//! `instrumentation_scope.version`, `metric.name`. Literals: strings, integers, floats, `true`, `false`,
//! `nil`, and the OTLP enum names (`SPAN_KIND_SERVER`, `STATUS_CODE_ERROR`,
//! `SEVERITY_NUMBER_WARN`, …). Anything else is a parse error naming where it stopped: a
//! condition is never silently ignored.

use regex::Regex;

/// A value an item yields for a path, or a literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    Nil,
}

/// Where a path reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    Name,
    Kind,
    StatusCode,
    SeverityNumber,
    SeverityText,
    Body,
    Attribute(String),
    ResourceAttribute(String),
    ScopeName,
    ScopeVersion,
    /// `metric.name`, in data point conditions.
    MetricName,
}

/// What an item exposes to conditions; `Value::Nil` for a path it does not have.
pub trait Subject {
    fn get(&self, path: &Path) -> Value;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
pub enum Condition {
    Compare(Path, Op, Value),
    IsMatch(Path, Regex),
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
}

impl Condition {
    pub fn parse(text: &str) -> Result<Condition, String> {
        let tokens = tokenize(text)?;
        let mut p = Parser { tokens, at: 0 };
        let c = p.or()?;
        match p.tokens.get(p.at) {
            None => Ok(c),
            Some(t) => Err(format!("unexpected {t} after a complete condition")),
        }
    }

    pub fn eval(&self, s: &dyn Subject) -> bool {
        match self {
            Condition::Compare(path, op, lit) => compare(&s.get(path), *op, lit),
            Condition::IsMatch(path, re) => match s.get(path) {
                Value::Str(v) => re.is_match(&v),
                Value::Int(i) => re.is_match(&i.to_string()),
                Value::Double(d) => re.is_match(&d.to_string()),
                Value::Bool(b) => re.is_match(&b.to_string()),
                Value::Nil => false,
            },
            Condition::And(a, b) => a.eval(s) && b.eval(s),
            Condition::Or(a, b) => a.eval(s) || b.eval(s),
            Condition::Not(c) => !c.eval(s),
        }
    }
}

/// OTTL semantics: values of different types are not equal and not ordered (ints and
/// doubles compare as numbers); `nil` equals only a missing value.
fn compare(left: &Value, op: Op, right: &Value) -> bool {
    use std::cmp::Ordering;
    let ordering = match (left, right) {
        (Value::Str(a), Value::Str(b)) => Some(a.cmp(b)),
        (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
        (Value::Int(a), Value::Double(b)) => (*a as f64).partial_cmp(b),
        (Value::Double(a), Value::Int(b)) => a.partial_cmp(&(*b as f64)),
        (Value::Double(a), Value::Double(b)) => a.partial_cmp(b),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Nil, Value::Nil) => Some(Ordering::Equal),
        _ => None,
    };
    match (op, ordering) {
        (Op::Eq, o) => o == Some(Ordering::Equal),
        (Op::Ne, o) => o != Some(Ordering::Equal),
        (_, None) => false,
        (Op::Lt, Some(o)) => o == Ordering::Less,
        (Op::Le, Some(o)) => o != Ordering::Greater,
        (Op::Gt, Some(o)) => o == Ordering::Greater,
        (Op::Ge, Some(o)) => o != Ordering::Less,
    }
}

// === tokens ===

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Num(String),
    Op(Op),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::Ident(s) => write!(f, "{s:?}"),
            Token::Str(s) => write!(f, "string {s:?}"),
            Token::Num(n) => write!(f, "number {n}"),
            Token::Op(op) => write!(f, "operator {op:?}"),
            Token::LParen => f.write_str("'('"),
            Token::RParen => f.write_str("')'"),
            Token::LBracket => f.write_str("'['"),
            Token::RBracket => f.write_str("']'"),
            Token::Comma => f.write_str("','"),
            Token::Dot => f.write_str("'.'"),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let two = chars.get(i + 1).copied();
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => (out.push(Token::LParen), i += 1).1,
            ')' => (out.push(Token::RParen), i += 1).1,
            '[' => (out.push(Token::LBracket), i += 1).1,
            ']' => (out.push(Token::RBracket), i += 1).1,
            ',' => (out.push(Token::Comma), i += 1).1,
            '.' => (out.push(Token::Dot), i += 1).1,
            '=' if two == Some('=') => (out.push(Token::Op(Op::Eq)), i += 2).1,
            '!' if two == Some('=') => (out.push(Token::Op(Op::Ne)), i += 2).1,
            '<' if two == Some('=') => (out.push(Token::Op(Op::Le)), i += 2).1,
            '>' if two == Some('=') => (out.push(Token::Op(Op::Ge)), i += 2).1,
            '<' => (out.push(Token::Op(Op::Lt)), i += 1).1,
            '>' => (out.push(Token::Op(Op::Gt)), i += 1).1,
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("a string is not closed".into()),
                        Some('"') => break,
                        Some('\\') => {
                            match chars.get(i + 1) {
                                Some(e @ ('"' | '\\')) => s.push(*e),
                                // Regexes keep their escapes (`\.`, `\d`).
                                Some(e) => {
                                    s.push('\\');
                                    s.push(*e);
                                }
                                None => return Err("a string is not closed".into()),
                            }
                            i += 2;
                            continue;
                        }
                        Some(ch) => s.push(*ch),
                    }
                    i += 1;
                }
                i += 1;
                out.push(Token::Str(s));
            }
            c if c.is_ascii_digit() || (c == '-' && two.is_some_and(|d| d.is_ascii_digit())) => {
                let start = i;
                i += 1;
                while chars
                    .get(i)
                    .is_some_and(|d| d.is_ascii_digit() || *d == '.' || *d == 'e' || *d == 'E')
                {
                    i += 1;
                }
                out.push(Token::Num(chars[start..i].iter().collect()));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '_')
                {
                    i += 1;
                }
                out.push(Token::Ident(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected character {other:?}")),
        }
    }
    Ok(out)
}

// === parser ===

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Result<Token, String> {
        let t = self
            .tokens
            .get(self.at)
            .cloned()
            .ok_or("the condition ends too early")?;
        self.at += 1;
        Ok(t)
    }

    fn expect(&mut self, want: Token) -> Result<(), String> {
        let got = self.next()?;
        if got == want {
            Ok(())
        } else {
            Err(format!("expected {want}, found {got}"))
        }
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Ident(w)) if w == word)
    }

    fn or(&mut self) -> Result<Condition, String> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.at += 1;
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, String> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.at += 1;
            left = Condition::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Condition, String> {
        if self.keyword("not") {
            self.at += 1;
            return Ok(Condition::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Token::LParen) {
            self.at += 1;
            let c = self.or()?;
            self.expect(Token::RParen)?;
            return Ok(c);
        }
        if self.keyword("IsMatch") {
            self.at += 1;
            self.expect(Token::LParen)?;
            let path = self.path()?;
            self.expect(Token::Comma)?;
            let Token::Str(pattern) = self.next()? else {
                return Err("IsMatch takes a path and a string pattern".into());
            };
            self.expect(Token::RParen)?;
            let re = Regex::new(&pattern).map_err(|e| format!("IsMatch pattern: {e}"))?;
            return Ok(Condition::IsMatch(path, re));
        }
        let path = self.path()?;
        let Token::Op(op) = self.next()? else {
            return Err("expected a comparison (==, !=, <, <=, >, >=) after the path".into());
        };
        Ok(Condition::Compare(path, op, self.literal()?))
    }

    fn path(&mut self) -> Result<Path, String> {
        let Token::Ident(first) = self.next()? else {
            return Err("expected a path such as name or attributes[\"key\"]".into());
        };
        let mut segments = vec![first];
        while self.peek() == Some(&Token::Dot) {
            self.at += 1;
            let Token::Ident(seg) = self.next()? else {
                return Err("expected a name after '.'".into());
            };
            segments.push(seg);
        }
        let key = if self.peek() == Some(&Token::LBracket) {
            self.at += 1;
            let Token::Str(key) = self.next()? else {
                return Err("expected a quoted key in [ ]".into());
            };
            self.expect(Token::RBracket)?;
            Some(key)
        } else {
            None
        };
        let joined = segments.join(".");
        Ok(match (joined.as_str(), key) {
            ("name", None) => Path::Name,
            ("kind", None) => Path::Kind,
            ("status.code", None) => Path::StatusCode,
            ("severity_number", None) => Path::SeverityNumber,
            ("severity_text", None) => Path::SeverityText,
            ("body", None) => Path::Body,
            ("attributes", Some(k)) => Path::Attribute(k),
            ("resource.attributes", Some(k)) => Path::ResourceAttribute(k),
            ("instrumentation_scope.name", None) => Path::ScopeName,
            ("instrumentation_scope.version", None) => Path::ScopeVersion,
            ("metric.name", None) => Path::MetricName,
            (other, _) => return Err(format!("unsupported path {other:?}")),
        })
    }

    fn literal(&mut self) -> Result<Value, String> {
        match self.next()? {
            Token::Str(s) => Ok(Value::Str(s)),
            Token::Num(n) => match n.parse::<i64>() {
                Ok(i) => Ok(Value::Int(i)),
                Err(_) => n
                    .parse::<f64>()
                    .map(Value::Double)
                    .map_err(|_| format!("{n} is not a number")),
            },
            Token::Ident(word) => match word.as_str() {
                "nil" => Ok(Value::Nil),
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                other => enum_value(other)
                    .map(Value::Int)
                    .ok_or_else(|| format!("unknown name {other:?}")),
            },
            other => Err(format!("expected a value, found {other}")),
        }
    }
}

/// OTLP enum names, as OTTL knows them.
fn enum_value(name: &str) -> Option<i64> {
    const SPAN_KINDS: [&str; 6] = [
        "SPAN_KIND_UNSPECIFIED",
        "SPAN_KIND_INTERNAL",
        "SPAN_KIND_SERVER",
        "SPAN_KIND_CLIENT",
        "SPAN_KIND_PRODUCER",
        "SPAN_KIND_CONSUMER",
    ];
    const STATUS: [&str; 3] = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];
    const SEVERITIES: [&str; 5] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];
    if let Some(i) = SPAN_KINDS.iter().position(|k| *k == name) {
        return Some(i as i64);
    }
    if let Some(i) = STATUS.iter().position(|k| *k == name) {
        return Some(i as i64);
    }
    if name == "SEVERITY_NUMBER_UNSPECIFIED" {
        return Some(0);
    }
    let rest = name.strip_prefix("SEVERITY_NUMBER_")?;
    if rest == "FATAL" {
        return Some(21);
    }
    // TRACE=1..4, DEBUG=5..8, INFO=9..12, WARN=13..16, ERROR=17..20, FATAL=21..24.
    let (level, n) = match rest.find(|c: char| c.is_ascii_digit()) {
        Some(at) => (&rest[..at], rest[at..].parse::<i64>().ok()?),
        None => (rest, 1),
    };
    let base = match SEVERITIES.iter().position(|s| *s == level) {
        Some(i) => 1 + 4 * i as i64,
        None if level == "FATAL" => 21,
        None => return None,
    };
    (1..=4).contains(&n).then_some(base + n - 1)
}

#[cfg(test)]
mod tests;
