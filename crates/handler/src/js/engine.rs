//! One QuickJS runtime with a context per namespace. Lives on one worker thread (`!Send`).
//!
//! Each namespace gets its own context (separate globals), the prelude (`prelude.js`), and its
//! module compiled and evaluated once. A call runs `__heraldCall` under a deadline enforced by the
//! runtime's interrupt handler; the heap is capped with `set_memory_limit`.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::{CaughtError, Context, Ctx, Exception, Function, Module, Object, Runtime, Value};

use crate::error::{LoadError, Operation};

/// Name of the in-memory utilities module.
const UTILS_MODULE: &str = "@aws-appsync/utils";
const UTILS_SOURCE: &str = "const h = globalThis.__heraldUtils;\n\
     export const util = h.util;\nexport const runtime = h.runtime;\nexport default h;\n";
const PRELUDE: &str = include_str!("prelude.js");
/// `@aws-appsync/utils/dynamodb`: the DynamoDB request builders.
const DYNAMODB_MODULE: &str = "@aws-appsync/utils/dynamodb";
const DYNAMODB_SOURCE: &str = include_str!("dynamodb.js");
/// `@aws-appsync/utils/rds`: the SQL request builders.
const RDS_MODULE: &str = "@aws-appsync/utils/rds";
const RDS_SOURCE: &str = include_str!("rds.js");
/// QuickJS's own stack limit; worker threads get a larger OS stack (see `pool.rs`).
pub(crate) const JS_STACK_BYTES: usize = 1024 * 1024;

/// A namespace's JavaScript, as loaded from the config.
#[derive(Debug, Clone)]
pub(crate) struct JsSource {
    pub namespace: String,
    /// Module name shown in stack traces (the file path, or `<namespace>.js`).
    pub module_name: String,
    pub code: String,
}

/// Which handlers a namespace's module exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Exports {
    pub on_publish: bool,
    pub on_subscribe: bool,
    /// `onPublish` is a `{request, response}` object (a data-source handler).
    pub publish_request: bool,
    /// `onSubscribe` is a `{request, response}` object.
    pub subscribe_request: bool,
}

/// Which step of a handler call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A function export, whole.
    Handler,
    /// `request` of a `{request, response}` export.
    Request,
    /// `response` of a `{request, response}` export.
    Response,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub time: Duration,
    pub memory_bytes: usize,
}

/// Deadline shared with the interrupt handler.
#[derive(Default)]
struct Watchdog {
    deadline: Cell<Option<Instant>>,
    fired: Cell<bool>,
}

impl Watchdog {
    fn arm(&self, limit: Duration) {
        self.fired.set(false);
        self.deadline.set(Some(Instant::now() + limit));
    }

    /// Disarms and says whether the deadline interrupted the script.
    fn disarm(&self) -> bool {
        self.deadline.set(None);
        self.fired.replace(false)
    }

    fn should_interrupt(&self) -> bool {
        match self.deadline.get() {
            Some(deadline) if Instant::now() >= deadline => {
                self.fired.set(true);
                true
            }
            _ => false,
        }
    }
}

/// Why a call failed inside the engine. `Timeout` and `OutOfMemory` mean the runtime must be
/// rebuilt before the next call.
#[derive(Debug)]
pub(crate) enum CallFailure {
    Timeout,
    OutOfMemory,
    /// An exception escaped the wrapper, or the engine failed; the text says which.
    Engine(String),
}

pub(crate) struct Engine {
    // Contexts first: they must be dropped before the runtime that owns their objects.
    contexts: Vec<Context>,
    watchdog: Rc<Watchdog>,
    limits: Limits,
    runtime: Runtime,
}

impl Engine {
    /// Builds the runtime and loads every namespace. Also reports what each module exports.
    pub(crate) fn new(
        sources: &[JsSource],
        limits: Limits,
    ) -> Result<(Self, Vec<Exports>), LoadError> {
        let runtime = Runtime::new().map_err(|e| LoadError::Engine(e.to_string()))?;
        runtime.set_memory_limit(limits.memory_bytes);
        runtime.set_max_stack_size(JS_STACK_BYTES);
        let watchdog = Rc::new(Watchdog::default());
        let dog = Rc::clone(&watchdog);
        runtime.set_interrupt_handler(Some(Box::new(move || dog.should_interrupt())));
        runtime.set_loader(UtilsOnly, UtilsOnly);
        let mut engine = Engine {
            contexts: Vec::with_capacity(sources.len()),
            watchdog,
            limits,
            runtime,
        };
        let mut exports = Vec::with_capacity(sources.len());
        for source in sources {
            exports.push(engine.load(source)?);
        }
        Ok((engine, exports))
    }

    fn load(&mut self, source: &JsSource) -> Result<Exports, LoadError> {
        let context = Context::full(&self.runtime).map_err(|e| LoadError::Engine(e.to_string()))?;
        let namespace = source.namespace.as_str();
        let script_err = |message: String| LoadError::Script {
            namespace: namespace.to_owned(),
            message,
        };
        self.watchdog.arm(self.limits.time);
        let result = context.with(|ctx| -> Result<Exports, LoadError> {
            install_natives(&ctx, namespace).map_err(|e| script_err(caught(&ctx, e)))?;
            ctx.eval::<(), _>(PRELUDE)
                .map_err(|e| LoadError::Engine(format!("prelude failed: {}", caught(&ctx, e))))?;
            let module = Module::declare(
                ctx.clone(),
                source.module_name.as_str(),
                source.code.as_str(),
            )
            .map_err(|e| syntax_error(&ctx, source, e))?;
            let (module, promise) = module.eval().map_err(|e| script_err(caught(&ctx, e)))?;
            promise
                .finish::<()>()
                .map_err(|e| script_err(caught(&ctx, e)))?;
            let on_publish = handler_export(&ctx, &module, Operation::Publish, namespace)?;
            let on_subscribe = handler_export(&ctx, &module, Operation::Subscribe, namespace)?;
            let exports = Exports {
                on_publish: on_publish.is_some(),
                on_subscribe: on_subscribe.is_some(),
                publish_request: on_publish.as_ref().is_some_and(|v| !v.is_function()),
                subscribe_request: on_subscribe.as_ref().is_some_and(|v| !v.is_function()),
            };
            let set: Function = ctx
                .globals()
                .get("__heraldSetHandlers")
                .map_err(|e| LoadError::Engine(caught(&ctx, e)))?;
            set.call::<_, ()>((on_publish, on_subscribe))
                .map_err(|e| LoadError::Engine(caught(&ctx, e)))?;
            Ok(exports)
        });
        if self.watchdog.disarm() {
            return Err(script_err(format!(
                "top-level code did not finish within {} ms",
                self.limits.time.as_millis()
            )));
        }
        let exports = result?;
        self.contexts.push(context);
        Ok(exports)
    }

    /// Runs one handler call and returns the wrapper's JSON text (see `prelude.js`).
    pub(crate) fn call(
        &self,
        index: usize,
        operation: Operation,
        phase: Phase,
        ctx_json: &str,
        extra: Option<&str>,
    ) -> Result<String, CallFailure> {
        let Some(context) = self.contexts.get(index) else {
            return Err(CallFailure::Engine(format!(
                "no JavaScript context #{index}"
            )));
        };
        let kind = match operation {
            Operation::Publish => "publish",
            Operation::Subscribe => "subscribe",
        };
        let phase = match phase {
            Phase::Handler => "handler",
            Phase::Request => "request",
            Phase::Response => "response",
        };
        self.watchdog.arm(self.limits.time);
        let result = context.with(|ctx| {
            let call: Function = ctx
                .globals()
                .get("__heraldCall")
                .map_err(|e| caught(&ctx, e))?;
            call.call::<_, String>((kind, phase, ctx_json, extra.unwrap_or("null")))
                .map_err(|e| caught(&ctx, e))
        });
        // Promise jobs the handler queued run now, under the same deadline, so none pile up
        // between calls. They cannot change the answer; their exceptions are ignored.
        while !self.watchdog.fired.get() {
            match self.runtime.execute_pending_job() {
                Ok(true) | Err(_) => {}
                Ok(false) => break,
            }
        }
        if self.watchdog.disarm() {
            return Err(CallFailure::Timeout);
        }
        result.map_err(|text| {
            if text.contains("out of memory") {
                CallFailure::OutOfMemory
            } else {
                CallFailure::Engine(text)
            }
        })
    }
}

/// Reads `onPublish`/`onSubscribe` from the module namespace: absent, a function, or AppSync's
/// data-source form, an object with a `request` function (and, usually, `response`). Anything
/// else is a load error.
fn handler_export<'js>(
    ctx: &Ctx<'js>,
    module: &Module<'js, rquickjs::module::Evaluated>,
    operation: Operation,
    namespace: &str,
) -> Result<Option<Value<'js>>, LoadError> {
    let name = operation.handler_name();
    let exports = module
        .namespace()
        .map_err(|e| LoadError::Engine(caught(ctx, e)))?;
    let value: Value = exports
        .get(name)
        .map_err(|e| LoadError::Engine(caught(ctx, e)))?;
    if value.is_undefined() {
        return Ok(None);
    }
    if value.is_function() {
        return Ok(Some(value));
    }
    let config_error = |reason: String| LoadError::Config {
        namespace: namespace.to_owned(),
        reason,
    };
    let Some(object) = value.as_object() else {
        return Err(config_error(format!(
            "export {name} must be a function or an object {{request, response}}"
        )));
    };
    let member = |key: &str| -> Result<Value<'js>, LoadError> {
        object
            .get(key)
            .map_err(|e| LoadError::Engine(caught(ctx, e)))
    };
    if !member("request")?.is_function() {
        return Err(config_error(format!(
            "export {name} is an object, so it needs a request(ctx) function"
        )));
    }
    let response = member("response")?;
    if !response.is_undefined() && !response.is_function() {
        return Err(config_error(format!(
            "export {name}.response must be a function"
        )));
    }
    Ok(Some(value))
}

fn install_natives(ctx: &Ctx<'_>, namespace: &str) -> rquickjs::Result<()> {
    let native = Object::new(ctx.clone())?;
    let ns = namespace.to_owned();
    native.set(
        "log",
        Function::new(ctx.clone(), move |level: String, message: String| {
            super::util::log(&ns, &level, &message)
        })?,
    )?;
    native.set("autoId", Function::new(ctx.clone(), super::util::auto_id)?)?;
    native.set(
        "base64Encode",
        Function::new(ctx.clone(), super::util::base64_encode)?,
    )?;
    native.set(
        "base64Decode",
        Function::new(ctx.clone(), |ctx: Ctx<'_>, input: String| {
            super::util::base64_decode(&input).map_err(|msg| Exception::throw_type(&ctx, &msg))
        })?,
    )?;
    ctx.globals().set("__heraldNative", native)
}

/// Describes a failed call, taking the pending exception if there is one.
fn caught(ctx: &Ctx<'_>, error: rquickjs::Error) -> String {
    match CaughtError::from_error(ctx, error) {
        CaughtError::Exception(e) => {
            let message = e.message().unwrap_or_default();
            match e.stack() {
                Some(stack) if !stack.trim().is_empty() => {
                    format!("{message}\n{}", stack.trim_end())
                }
                _ => message,
            }
        }
        CaughtError::Value(v) => {
            if v.is_null() || v.is_undefined() {
                // QuickJS throws null when it cannot even allocate the error object.
                "out of memory".to_owned()
            } else {
                format!("{v:?}")
            }
        }
        // Rust-side allocation failure while crossing into JavaScript.
        CaughtError::Error(rquickjs::Error::Allocation) => "out of memory".to_owned(),
        CaughtError::Error(e) => e.to_string(),
    }
}

/// Turns a compile failure into [`LoadError::Syntax`] with the line QuickJS reported.
fn syntax_error(ctx: &Ctx<'_>, source: &JsSource, error: rquickjs::Error) -> LoadError {
    let text = caught(ctx, error);
    let line = line_of(&text, &source.module_name);
    let message = text.lines().next().unwrap_or_default().to_owned();
    LoadError::Syntax {
        namespace: source.namespace.clone(),
        line,
        message,
    }
}

/// Finds `<module>:<line>` in a QuickJS stack trace.
fn line_of(stack: &str, module_name: &str) -> Option<u32> {
    let needle = format!("{module_name}:");
    let start = stack.find(&needle)? + needle.len();
    let digits: String = stack[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Resolves and loads only `@aws-appsync/utils` and its `/dynamodb` and `/rds` modules, from
/// memory. Nothing touches the filesystem.
struct UtilsOnly;

impl Resolver for UtilsOnly {
    fn resolve<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        if [UTILS_MODULE, DYNAMODB_MODULE, RDS_MODULE].contains(&name) {
            Ok(name.to_owned())
        } else {
            Err(rquickjs::Error::new_resolving_message(
                base,
                name,
                format!(
                    "only {UTILS_MODULE}, {DYNAMODB_MODULE} and {RDS_MODULE} can be imported in Herald handlers"
                ),
            ))
        }
    }
}

impl Loader for UtilsOnly {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, rquickjs::module::Declared>> {
        if name == UTILS_MODULE {
            Module::declare(ctx.clone(), name, UTILS_SOURCE)
        } else if name == DYNAMODB_MODULE {
            Module::declare(ctx.clone(), name, DYNAMODB_SOURCE)
        } else if name == RDS_MODULE {
            Module::declare(ctx.clone(), name, RDS_SOURCE)
        } else {
            Err(rquickjs::Error::new_loading(name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_line_in_a_stack() {
        assert_eq!(line_of("    at chat.js:3:7\n", "chat.js"), Some(3));
        assert_eq!(line_of("no location", "chat.js"), None);
    }
}
