//! How values are kept in columns both backends read alike: enums as
//! TEXT ([`text_enum!`], an unknown value an [`UnknownValue`] error that
//! names it) and flags as BIGINT 0/1 ([`IntFlag`]).

/// A TEXT value that no variant of the enum reading it stores (a row
/// written by a newer version, or by hand).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownValue {
    /// What was being read, e.g. `held state`.
    pub what: &'static str,
    pub value: String,
}

/// Defines an enum whose values are stored as TEXT: `as_str()` is the
/// stored text, which `Display` writes too; `FromStr` and `TryFrom<String>`
/// read it back, refusing an unknown value with an [`UnknownValue`] that
/// names it.
///
/// The enum also decodes itself from a TEXT column of sqlx's `Any`, so a
/// `#[derive(sqlx::FromRow)]` row takes it as a plain field. Not through
/// `#[sqlx(try_from = "String")]`: sqlx 0.9.0 replaces the error of such a
/// conversion with "unprintable error", and the unknown value would be lost.
///
/// ```text
/// text_enum! {
///     /// Doc of the enum.
///     pub enum Colour("colour") {
///         /// Doc of the variant.
///         Red = "red",
///     }
/// }
/// ```
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in the order declared.
            pub const ALL: &[$name] = &[$($name::$variant),+];

            /// The value as stored in the database (and shown).
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::store::column::UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err($crate::store::column::UnknownValue {
                        what: $what,
                        value: s.to_owned(),
                    }),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::store::column::UnknownValue;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl ::sqlx::Type<::sqlx::Any> for $name {
            fn type_info() -> ::sqlx::any::AnyTypeInfo {
                <str as ::sqlx::Type<::sqlx::Any>>::type_info()
            }

            fn compatible(ty: &::sqlx::any::AnyTypeInfo) -> bool {
                <str as ::sqlx::Type<::sqlx::Any>>::compatible(ty)
            }
        }

        impl<'r> ::sqlx::Decode<'r, ::sqlx::Any> for $name {
            fn decode(
                value: ::sqlx::any::AnyValueRef<'r>,
            ) -> Result<Self, ::sqlx::error::BoxDynError> {
                Ok(<&str as ::sqlx::Decode<'r, ::sqlx::Any>>::decode(value)?.parse()?)
            }
        }
    };
}
pub(crate) use text_enum;

/// An integer column read as a flag, non-zero being true: the schema keeps
/// flags as BIGINT 0/1 on both backends (sqlx's `Any` decodes `bool` only
/// from a boolean column), and a `COUNT(*)` answers "is there one". For
/// `#[sqlx(try_from = "IntFlag")]` on a `bool` field.
pub(crate) struct IntFlag(i64);

impl sqlx::Type<sqlx::Any> for IntFlag {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <i64 as sqlx::Type<sqlx::Any>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        <i64 as sqlx::Type<sqlx::Any>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Any> for IntFlag {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        <i64 as sqlx::Decode<'r, sqlx::Any>>::decode(value).map(IntFlag)
    }
}

impl From<IntFlag> for bool {
    fn from(f: IntFlag) -> bool {
        f.0 != 0
    }
}
