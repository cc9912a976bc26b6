//! `#[derive(Section)]`: a configuration section whose every key is declared once, as a struct
//! field with its doc comment, its Rust type (and serde attributes), and a `#[key(...)]`
//! attribute:
//!
//! - `default = EXPR`: the default value (else `Default::default()` of the field's type);
//! - `unit = "ms"`: the unit shown in docs (`"duration"` for humantime strings);
//! - `flag = "name"`: also a command-line flag `--name`;
//! - `min = EXPR` / `max = EXPR`: the allowed range, checked by `validate`;
//! - `secret`: the value is never printed (errors, `print-config`);
//! - `map`: a table of free string keys (e.g. labels), set with `k=v`;
//! - `section`: the field is a nested section (`[parent.child]`);
//! - `live`: a changed value takes effect on a configuration reload (SIGHUP, `--watch-config`)
//!   without a restart; every other key needs a restart (a reload reports it as pending);
//! - `limit = "counter"`: the key bounds what input may cost (a size, count, rate or timeout),
//!   and `counter` is the counter that counts each time the bound bites (`"-"`: not counted
//!   separately, e.g. a queue that only pushes back; `{owner}` in it stands for the name of the
//!   section holding the key's section, for sections shared by listeners). Limit keys are
//!   listed in `docs/limits.md`.
//!
//! The derive implements `Default` and `fleetset_core::config::Section` (the key list, a type
//! check per key, and the range checks). The struct itself derives `Serialize`/`Deserialize`
//! with `#[serde(default, deny_unknown_fields)]`.

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::{parse_macro_input, Data, DeriveInput, Expr, Fields, LitStr};

#[derive(Default)]
struct KeyAttr {
    default: Option<Expr>,
    unit: Option<LitStr>,
    flag: Option<LitStr>,
    min: Option<Expr>,
    max: Option<Expr>,
    secret: bool,
    map: bool,
    section: bool,
    live: bool,
    limit: Option<LitStr>,
}

fn doc_of(attrs: &[syn::Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value().trim().to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    lines.join(" ").trim().to_string()
}

fn key_attr(attrs: &[syn::Attribute]) -> syn::Result<KeyAttr> {
    let mut k = KeyAttr::default();
    for a in attrs.iter().filter(|a| a.path().is_ident("key")) {
        a.parse_nested_meta(|meta| {
            let p = &meta.path;
            if p.is_ident("default") {
                k.default = Some(meta.value()?.parse()?);
            } else if p.is_ident("unit") {
                k.unit = Some(meta.value()?.parse()?);
            } else if p.is_ident("flag") {
                k.flag = Some(meta.value()?.parse()?);
            } else if p.is_ident("min") {
                k.min = Some(meta.value()?.parse()?);
            } else if p.is_ident("max") {
                k.max = Some(meta.value()?.parse()?);
            } else if p.is_ident("secret") {
                k.secret = true;
            } else if p.is_ident("map") {
                k.map = true;
            } else if p.is_ident("section") {
                k.section = true;
            } else if p.is_ident("live") {
                k.live = true;
            } else if p.is_ident("limit") {
                k.limit = Some(meta.value()?.parse()?);
            } else {
                return Err(meta.error("unknown #[key] option"));
            }
            Ok(())
        })?;
    }
    Ok(k)
}

/// Derives `Default` and `fleetset_core::config::Section`; see the crate docs.
#[proc_macro_derive(Section, attributes(key))]
pub fn derive_section(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let name = &input.ident;
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(name, "Section needs a struct"));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new_spanned(name, "Section needs named fields"));
    };
    let section_doc = doc_of(&input.attrs);
    let mut defaults = Vec::new();
    let mut describe = Vec::new();
    let mut checks = Vec::new();
    for f in &fields.named {
        let ident = f.ident.as_ref().expect("named field");
        let key = ident.to_string();
        let ty = &f.ty;
        let k = key_attr(&f.attrs)?;
        let doc = doc_of(&f.attrs);
        let default = match &k.default {
            Some(e) => quote! { #e },
            None => quote! { ::core::default::Default::default() },
        };
        defaults.push(quote! { #ident: #default });
        if k.section {
            describe.push(quote! {
                out.push(::fleetset_core::config::KeyDoc::section(
                    format!("{prefix}{}", #key), #doc));
                <#ty as ::fleetset_core::config::Section>::describe(
                    &format!("{prefix}{}.", #key), out);
            });
            checks.push(quote! {
                ::fleetset_core::config::Section::check_ranges(
                    &self.#ident, &format!("{prefix}{}.", #key))?;
            });
            continue;
        }
        let serde_attrs: Vec<_> = f
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("serde"))
            .collect();
        let unit = k.unit.map(|u| u.value()).unwrap_or_default();
        let flag = match &k.flag {
            Some(f) => quote! { Some(#f) },
            None => quote! { None },
        };
        let limit = match &k.limit {
            Some(c) => quote! { Some(#c) },
            None => quote! { None },
        };
        let (secret, map, live) = (k.secret, k.map, k.live);
        let wrap = format_ident!("__{}Value", name);
        describe.push(quote! {
            out.push(::fleetset_core::config::KeyDoc {
                path: format!("{prefix}{}", #key),
                ty: stringify!(#ty),
                unit: #unit,
                doc: #doc,
                flag: #flag,
                secret: #secret,
                map: #map,
                live: #live,
                section: false,
                limit: #limit,
                check: {
                    fn check(v: ::toml::Value) -> Result<(), String> {
                        #[derive(::serde::Deserialize)]
                        #[allow(non_camel_case_types, dead_code)]
                        struct #wrap { #(#serde_attrs)* v: #ty }
                        let mut t = ::toml::Table::new();
                        t.insert("v".into(), v);
                        ::toml::Value::Table(t)
                            .try_into::<#wrap>()
                            .map(|_| ())
                            .map_err(|e| e.message().replace("`v`", "the value").to_string())
                    }
                    Some(check)
                },
            });
        });
        for (bound, op, word) in [(&k.min, quote! { < }, ">="), (&k.max, quote! { > }, "<=")] {
            if let Some(b) = bound {
                checks.push(quote! {
                    if self.#ident #op #b {
                        #[derive(::serde::Serialize)]
                        #[allow(non_camel_case_types)]
                        struct #wrap { #(#serde_attrs)* v: #ty }
                        let show = |v: #ty| ::toml::Table::try_from(#wrap { v })
                            .ok()
                            .and_then(|t| t.get("v").map(|v| v.to_string()))
                            .unwrap_or_default();
                        return Err(::fleetset_core::config::ConfigError::Invalid {
                            key: format!("{prefix}{}", #key),
                            value: if #secret { "***".into() } else { show(self.#ident.clone()) },
                            allowed: format!("{} {}", #word, show(#b)),
                        });
                    }
                });
            }
        }
    }
    Ok(quote! {
        impl ::core::default::Default for #name {
            fn default() -> Self {
                #name { #(#defaults),* }
            }
        }
        impl ::fleetset_core::config::Section for #name {
            const DOC: &'static str = #section_doc;
            fn describe(prefix: &str, out: &mut Vec<::fleetset_core::config::KeyDoc>) {
                #(#describe)*
            }
            fn check_ranges(&self, prefix: &str) -> Result<(), ::fleetset_core::config::ConfigError> {
                let _ = prefix;
                #(#checks)*
                Ok(())
            }
        }
    })
}
