//! Chat templates: turning a list of messages into the prompt text a model
//! was trained on, by rendering the model's Jinja template the way Hugging
//! Face `transformers` does (`apply_chat_template`).
//!
//! The environment mirrors `transformers`' sandboxed Jinja environment:
//!
//! * `trim_blocks` and `lstrip_blocks` on, `keep_trailing_newline` off
//!   (Jinja's default, which `transformers` keeps: one trailing newline of
//!   the template is dropped);
//! * `loop_controls` (`{% break %}`, `{% continue %}`);
//! * Python string/dict/list methods (`.strip()`, `.startswith()`,
//!   `.items()`, ...) through `minijinja_contrib::pycompat`;
//! * `True`/`False`/`None` printed as Python prints them;
//! * `raise_exception(msg)`, which fails the rendering with
//!   [`LadeError::ChatTemplate`];
//! * `strftime_now(format)`, formatting the current time (UTC: there is no
//!   time-zone database here);
//! * a `tojson` filter writing JSON like Python's `json.dumps` with
//!   `ensure_ascii=False` (`", "` and `": "` separators, `indent`,
//!   `sort_keys`, `separators`, `ensure_ascii` keyword arguments), not
//!   HTML-escaped as minijinja's own.
//!
//! Known difference: minijinja (built without its `preserve_order`
//! feature) keeps map keys sorted, so iterating a dict or `tojson` of a
//! dict lists keys alphabetically where Python keeps insertion order.
//!
//! The context holds `messages`, `add_generation_prompt`, `bos_token`,
//! `eos_token`, and `tools`/`documents` set to `none` (as `transformers`
//! passes them when no tools are given).
//!
//! Models without a template get [`CHATML_TEMPLATE`] (see
//! [`ChatTemplate::from_optional`]).

use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::error::{LadeError, Result};
use crate::tokenizer::TextTokenizer;

/// The fallback template for models that ship none: ChatML, as in
/// `transformers`' former default template, without a system prompt.
///
/// ```text
/// <|im_start|>{role}\n{content}<|im_end|>\n   (per message)
/// <|im_start|>assistant\n                     (with add_generation_prompt)
/// ```
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}\
{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\
{% endfor %}\
{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const TEMPLATE_NAME: &str = "chat_template";

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .finish()
    }
}

fn template_err(e: Error) -> LadeError {
    // `raise_exception` messages are shown as written.
    if e.kind() == ErrorKind::InvalidOperation {
        if let Some(detail) = e.detail() {
            if let Some(msg) = detail.strip_prefix(RAISED) {
                return LadeError::ChatTemplate(msg.to_string());
            }
        }
    }
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    LadeError::ChatTemplate(msg)
}

const RAISED: &str = "raise_exception: ";

impl ChatTemplate {
    /// Compiles a Jinja chat template; a syntax error gives
    /// [`LadeError::ChatTemplate`].
    pub fn new(source: &str) -> Result<Self> {
        let mut env = Environment::new();
        let mut syntax = minijinja::syntax::SyntaxConfig::builder();
        syntax
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(false);
        env.set_syntax(syntax.build().map_err(template_err)?);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.set_formatter(python_formatter);
        env.add_template_owned(TEMPLATE_NAME, source.to_string())
            .map_err(template_err)?;
        Ok(Self {
            env,
            source: source.to_string(),
        })
    }

    /// The built-in ChatML template ([`CHATML_TEMPLATE`]).
    pub fn chatml() -> Result<Self> {
        Self::new(CHATML_TEMPLATE)
    }

    /// The given template, or ChatML when the model has none.
    pub fn from_optional(source: Option<&str>) -> Result<Self> {
        Self::new(source.unwrap_or(CHATML_TEMPLATE))
    }

    /// The tokenizer's template, or ChatML when the model has none.
    pub fn from_tokenizer(tokenizer: &TextTokenizer) -> Result<Self> {
        Self::from_optional(tokenizer.chat_template())
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages` into prompt text. With `add_generation_prompt`,
    /// the text ends with the opening of an assistant turn.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<String> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from_pairs([
                    ("role", Value::from(m.role.as_str())),
                    ("content", Value::from(m.content.as_str())),
                ])
            })
            .collect();
        let ctx = Value::from_pairs([
            ("messages", Value::from(messages)),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("bos_token", Value::from(bos_token)),
            ("eos_token", Value::from(eos_token)),
            ("tools", Value::from(())),
            ("documents", Value::from(())),
        ]);
        let template = self.env.get_template(TEMPLATE_NAME).map_err(template_err)?;
        template.render(ctx).map_err(template_err)
    }
}

/// Prints `True`/`False`/`None` as Python does; everything else as usual.
fn python_formatter(
    out: &mut minijinja::Output,
    state: &mut minijinja::State,
    value: &Value,
) -> std::result::Result<(), Error> {
    match value.kind() {
        ValueKind::Bool => Ok(out.write_str(if value.is_true() { "True" } else { "False" })?),
        ValueKind::None => Ok(out.write_str("None")?),
        _ => minijinja::escape_formatter(out, state, value),
    }
}

fn raise_exception(msg: String) -> std::result::Result<Value, Error> {
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("{RAISED}{msg}"),
    ))
}

fn strftime_now(format: &str) -> std::result::Result<String, Error> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(format_utc(i64::try_from(secs).unwrap_or(0), format))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// A subset of C `strftime` for a UTC timestamp: `%Y %y %m %B %b %h %d %e
/// %j %A %a %w %H %I %M %S %p %F %T %D %%`, with glibc's `-` flag (no
/// padding, e.g. `%-d`). Other directives are copied as written.
fn format_utc(secs: i64, format: &str) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (sod / 3600, sod % 3600 / 60, sod % 60);
    let weekday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let month_name = MONTHS[(month - 1) as usize];
    let cumulative = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday =
        cumulative[(month - 1) as usize] + i64::from(day) + i64::from(month > 2 && is_leap(year));
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };

    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let no_pad = chars.peek() == Some(&'-');
        if no_pad {
            chars.next();
        }
        let num = |v: i64, width: usize| {
            if no_pad {
                v.to_string()
            } else {
                format!("{v:0width$}")
            }
        };
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&num(year.rem_euclid(100), 2)),
            Some('m') => out.push_str(&num(i64::from(month), 2)),
            Some('B') => out.push_str(month_name),
            Some('b') | Some('h') => out.push_str(&month_name[..3]),
            Some('d') => out.push_str(&num(i64::from(day), 2)),
            Some('e') => out.push_str(&format!("{day:2}")),
            Some('j') => out.push_str(&num(yday, 3)),
            Some('A') => out.push_str(WEEKDAYS[weekday]),
            Some('a') => out.push_str(&WEEKDAYS[weekday][..3]),
            Some('w') => out.push_str(&weekday.to_string()),
            Some('H') => out.push_str(&num(hour, 2)),
            Some('I') => out.push_str(&num(hour12, 2)),
            Some('M') => out.push_str(&num(minute, 2)),
            Some('S') => out.push_str(&num(second, 2)),
            Some('p') => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            Some('F') => out.push_str(&format!("{year}-{month:02}-{day:02}")),
            Some('T') => out.push_str(&format!("{hour:02}:{minute:02}:{second:02}")),
            Some('D') => out.push_str(&format!("{month:02}/{day:02}/{:02}", year.rem_euclid(100))),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                if no_pad {
                    out.push('-');
                }
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// JSON layout options of [`tojson`], as Python's `json.dumps` takes them.
struct JsonStyle {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

/// `value|tojson(indent=None, sort_keys=False, separators=None,
/// ensure_ascii=False)`, matching `transformers`' `tojson` (Python's
/// `json.dumps`), without HTML escaping.
fn tojson(
    value: &Value,
    indent: Option<Value>,
    kwargs: Kwargs,
) -> std::result::Result<Value, Error> {
    let indent = match indent {
        Some(v) => Some(v),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match v.kind() {
            ValueKind::String => Some(v.as_str().unwrap_or_default().to_string()),
            ValueKind::Number => {
                let n = v.as_i64().ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: indent must be an integer",
                    )
                })?;
                Some(" ".repeat(usize::try_from(n.clamp(0, 64)).unwrap_or(0)))
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an integer or a string",
                ))
            }
        },
    };
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let separators = kwargs.get::<Option<Vec<String>>>("separators")?;
    kwargs.assert_all_used()?;
    let (item_sep, key_sep) = match separators {
        Some(s) if s.len() == 2 => (s[0].clone(), s[1].clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair of strings",
            ))
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let style = JsonStyle {
        indent,
        item_sep,
        key_sep,
        sort_keys,
        ensure_ascii,
    };
    let mut out = String::new();
    write_json(&mut out, value, &style, 0)?;
    Ok(Value::from_safe_string(out))
}

fn write_json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && !c.is_ascii()) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn newline_indent(out: &mut String, style: &JsonStyle, depth: usize) {
    if let Some(indent) = &style.indent {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(indent);
        }
    }
}

fn write_json(
    out: &mut String,
    value: &Value,
    style: &JsonStyle,
    depth: usize,
) -> std::result::Result<(), Error> {
    if depth > 128 {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "tojson: value nested too deeply",
        ));
    }
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if value.is_integer() {
                out.push_str(&value.to_string());
            } else {
                let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
                if f.is_nan() {
                    out.push_str("NaN");
                } else if f.is_infinite() {
                    out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
                } else if f.fract() == 0.0 && f.abs() < 1e16 {
                    out.push_str(&format!("{f:.1}"));
                } else {
                    out.push_str(&f.to_string());
                }
            }
        }
        ValueKind::String => {
            write_json_str(out, value.as_str().unwrap_or_default(), style.ensure_ascii)
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            let key_text = |k: &Value| match k.as_str() {
                Some(s) => s.to_string(),
                None if k.is_none() => "null".to_string(),
                None => k.to_string(),
            };
            if style.sort_keys {
                keys.sort_by_key(|k| key_text(k));
            }
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_sep);
                }
                newline_indent(out, style, depth + 1);
                write_json_str(out, &key_text(key), style.ensure_ascii);
                out.push_str(&style.key_sep);
                write_json(out, &value.get_item(key)?, style, depth + 1)?;
            }
            newline_indent(out, style, depth);
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_sep);
                }
                newline_indent(out, style, depth + 1);
                write_json(out, item, style, depth + 1)?;
            }
            newline_indent(out, style, depth);
            out.push(']');
        }
        _ => write_json_str(out, &value.to_string(), style.ensure_ascii),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::tests::smollm;

    const LLAMA2_STYLE: &str = "{% if messages[0]['role'] == 'system' %}\
{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}\
{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}\
{% for message in loop_messages %}\
{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\
{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}\
{% endif %}\
{% if loop.index0 == 0 and system_message != false %}\
{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}\
{% else %}{% set content = message['content'] %}{% endif %}\
{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}\
{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}\
{% endfor %}";

    #[test]
    fn smollm_template_matches_transformers() {
        let tok = smollm();
        let tmpl = ChatTemplate::from_tokenizer(tok).unwrap();
        let bos = tok.bos_token().unwrap();
        let eos = tok.eos_token().unwrap();
        let out = tmpl
            .render(&[ChatMessage::user("Hi")], true, &bos, &eos)
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        // A given system message replaces the default one.
        let out = tmpl
            .render(
                &[ChatMessage::system("Be brief."), ChatMessage::user("Hi")],
                false,
                &bos,
                &eos,
            )
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
        // The rendered prompt tokenizes with its special tokens.
        let ids = tok.encode(&out, false).unwrap();
        assert_eq!(ids[0], 1);
        assert_eq!(ids.iter().filter(|&&id| id == 2).count(), 2);
    }

    #[test]
    fn llama2_style_template_with_strip_and_raise() {
        let tmpl = ChatTemplate::new(LLAMA2_STYLE).unwrap();
        let msgs = [
            ChatMessage::system("Be kind."),
            ChatMessage::user("  Hello there \n"),
            ChatMessage::assistant(" Hi! "),
            ChatMessage::user("Bye"),
        ];
        let out = tmpl.render(&msgs, false, "<s>", "</s>").unwrap();
        assert_eq!(
            out,
            "<s>[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\n  Hello there [/INST] Hi! </s><s>[INST] Bye [/INST]"
        );
        let bad = [ChatMessage::user("a"), ChatMessage::user("b")];
        let err = tmpl.render(&bad, false, "<s>", "</s>").unwrap_err();
        match err {
            LadeError::ChatTemplate(msg) => assert_eq!(
                msg,
                "Conversation roles must alternate user/assistant/user/assistant/..."
            ),
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn template_errors() {
        let err = ChatTemplate::new("{% for m in messages %}{{ m.content }}").unwrap_err();
        assert!(matches!(err, LadeError::ChatTemplate(_)), "{err}");
        let err = ChatTemplate::new("{{ messages[0].content.no_such_method() }}")
            .unwrap()
            .render(&[ChatMessage::user("x")], false, "", "")
            .unwrap_err();
        assert!(matches!(err, LadeError::ChatTemplate(_)), "{err}");
    }

    #[test]
    fn chatml_fallback() {
        let tmpl = ChatTemplate::from_optional(None).unwrap();
        let out = tmpl
            .render(
                &[ChatMessage::system("S"), ChatMessage::user("U")],
                true,
                "",
                "",
            )
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(ChatTemplate::chatml().unwrap().source(), CHATML_TEMPLATE);
    }

    #[test]
    fn whitespace_control_like_transformers() {
        // trim_blocks + lstrip_blocks; one trailing newline dropped.
        let src = "{% for m in messages %}\n    {% if m.role == 'user' %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}\n";
        let out = ChatTemplate::new(src)
            .unwrap()
            .render(
                &[ChatMessage::user("a"), ChatMessage::user("b")],
                false,
                "",
                "",
            )
            .unwrap();
        assert_eq!(out, "[a]\n[b]\n");
    }

    #[test]
    fn python_methods_and_tools_none() {
        let src = "{{ messages[0].content.startswith('He') }}|{{ messages[0].content.upper() }}|\
{{ messages[0].content.split(' ') | length }}|{{ tools is none }}|{{ 'x' if tools else 'y' }}|\
{% for k, v in {'a': 1}.items() %}{{ k }}={{ v }}{% endfor %}";
        let out = ChatTemplate::new(src)
            .unwrap()
            .render(&[ChatMessage::user("Hello big world")], false, "", "")
            .unwrap();
        assert_eq!(out, "True|HELLO BIG WORLD|3|True|y|a=1");
    }

    #[test]
    fn tojson_like_python() {
        let src = "{{ {'name': 'f', 'n': [1, 2.5, 3.0, none, true], 'q': 'a\"<é>'} | tojson }}\n\
{{ {'b': 1, 'a': {}} | tojson(indent=2, sort_keys=true) }}\n\
{{ messages | tojson(separators=[',', ':']) }}\n\
{{ 'é' | tojson(ensure_ascii=true) }}";
        let out = ChatTemplate::new(src)
            .unwrap()
            .render(&[ChatMessage::user("hi")], false, "", "")
            .unwrap();
        // Same text as Python's json.dumps, except for key order: minijinja
        // (without its `preserve_order` feature) keeps map keys sorted.
        assert_eq!(
            out,
            "{\"n\": [1, 2.5, 3.0, null, true], \"name\": \"f\", \"q\": \"a\\\"<é>\"}\n\
             {\n  \"a\": {},\n  \"b\": 1\n}\n\
             [{\"content\":\"hi\",\"role\":\"user\"}]\n\
             \"\\u00e9\""
        );
    }

    #[test]
    fn strftime() {
        assert_eq!(format_utc(0, "%d %b %Y"), "01 Jan 1970");
        // 2023-11-14 22:13:20 UTC, a Tuesday, day 318.
        let t = 1_700_000_000;
        assert_eq!(
            format_utc(t, "%A %a %B %-d %e %m %y %j %H:%M:%S %I%p %F %T %D %% %Q"),
            "Tuesday Tue November 14 14 11 23 318 22:13:20 10PM 2023-11-14 22:13:20 11/14/23 % %Q"
        );
        // 2024-02-29 (leap day), 2000-03-01.
        assert_eq!(format_utc(1_709_164_800, "%F %j"), "2024-02-29 060");
        assert_eq!(format_utc(951_868_800, "%F %j %w"), "2000-03-01 061 3");
        let out = ChatTemplate::new("{{ strftime_now('%Y') }}")
            .unwrap()
            .render(&[], false, "", "")
            .unwrap();
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn chat_message_serde() {
        let m: ChatMessage = serde_json::from_str(r#"{"role":"user","content":"Hi"}"#).unwrap();
        assert_eq!(m, ChatMessage::user("Hi"));
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"role":"user","content":"Hi"}"#
        );
    }
}
