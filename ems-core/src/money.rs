//! Exact money: a [`Decimal`] amount in an ISO 4217 [`Currency`].

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// An ISO 4217 currency with its minor unit (2 for EUR, 0 for JPY, 3 for KWD).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// Euro.
    pub const EUR: Currency = Currency(iso_currency::Currency::EUR);
    /// US dollar.
    pub const USD: Currency = Currency(iso_currency::Currency::USD);
    /// Pound sterling.
    pub const GBP: Currency = Currency(iso_currency::Currency::GBP);
    /// Japanese yen (no minor unit).
    pub const JPY: Currency = Currency(iso_currency::Currency::JPY);
    /// Kuwaiti dinar (three decimals).
    pub const KWD: Currency = Currency(iso_currency::Currency::KWD);

    /// Looks a currency up by its three-letter code (case-insensitive).
    pub fn from_code(code: &str) -> Result<Self> {
        let upper = code.trim().to_ascii_uppercase();
        let c = iso_currency::Currency::from_code(&upper).ok_or_else(|| {
            Error::invalid("currency", format!("{code:?} is not an ISO 4217 code"))
        })?;
        if c.exponent().is_none() {
            return Err(Error::invalid(
                "currency",
                format!("{upper} has no minor unit and cannot price tickets"),
            ));
        }
        Ok(Currency(c))
    }

    /// The three-letter code.
    pub fn code(&self) -> &'static str {
        self.0.code()
    }

    /// Number of decimals of the minor unit.
    pub fn minor_units(&self) -> u32 {
        u32::from(self.0.exponent().unwrap_or(2))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Currency::from_code(s)
    }
}

impl TryFrom<String> for Currency {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Currency::from_code(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.code().to_owned()
    }
}

/// How an amount is rounded to the currency's minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Rounding {
    /// Half away from zero (commercial rounding): 0.125 → 0.13.
    #[default]
    HalfUp,
    /// Half to even (banker's rounding): 0.125 → 0.12.
    HalfEven,
    /// Toward zero.
    Down,
    /// Away from zero.
    Up,
}

impl Rounding {
    fn strategy(self) -> RoundingStrategy {
        match self {
            Rounding::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            Rounding::HalfEven => RoundingStrategy::MidpointNearestEven,
            Rounding::Down => RoundingStrategy::ToZero,
            Rounding::Up => RoundingStrategy::AwayFromZero,
        }
    }
}

/// An exact amount of money. Arithmetic between different currencies is an
/// error, never a silent conversion; floating point is never involved.
///
/// ```
/// use ems_core::money::{Currency, Money};
/// let price = Money::parse("19.99", "EUR").unwrap();
/// let total = price.times(3).unwrap();
/// assert_eq!(total.to_string(), "59.97 EUR");
/// assert!(total.checked_add(Money::parse("1", "USD").unwrap()).is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    /// `amount` in `currency`, exactly as given (not rounded).
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Self { amount, currency }
    }

    /// Zero in `currency`.
    pub fn zero(currency: Currency) -> Self {
        Self::new(Decimal::ZERO, currency)
    }

    /// Parses a decimal string and a currency code.
    pub fn parse(amount: &str, currency: &str) -> Result<Self> {
        let currency = Currency::from_code(currency)?;
        let amount = Decimal::from_str(amount.trim())
            .map_err(|e| Error::invalid("amount", format!("{amount:?}: {e}")))?;
        Ok(Self::new(amount, currency))
    }

    /// Amount from an integer count of minor units (cents): `(1999, EUR)` is 19.99 EUR.
    pub fn from_minor(minor: i64, currency: Currency) -> Self {
        Self::new(Decimal::new(minor, currency.minor_units()), currency)
    }

    /// The amount.
    pub fn amount(&self) -> Decimal {
        self.amount
    }

    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The amount in minor units, if it is a whole number of them and fits in `i64`.
    pub fn to_minor(&self) -> Result<i64> {
        let scaled = self.amount * Decimal::from(10i64.pow(self.currency.minor_units()));
        if scaled.fract() != Decimal::ZERO {
            return Err(Error::invalid(
                "amount",
                format!("{self} has more decimals than {} allows", self.currency),
            ));
        }
        i64::try_from(scaled)
            .map_err(|_| Error::invalid("amount", format!("{self} is out of range")))
    }

    /// Rounds to the currency's minor unit with `mode`.
    pub fn round(&self, mode: Rounding) -> Self {
        Self::new(
            self.amount
                .round_dp_with_strategy(self.currency.minor_units(), mode.strategy())
                .normalize_to(self.currency.minor_units()),
            self.currency,
        )
    }

    /// Whether the amount is already a whole number of minor units.
    pub fn is_minor_exact(&self) -> bool {
        self.amount.round_dp(self.currency.minor_units()) == self.amount
    }

    /// Whether the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.amount.is_zero()
    }

    /// Whether the amount is below zero.
    pub fn is_negative(&self) -> bool {
        self.amount.is_sign_negative() && !self.amount.is_zero()
    }

    fn same_currency(&self, other: &Money) -> Result<()> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(Error::invalid(
                "currency",
                format!("cannot combine {} with {}", self.currency, other.currency),
            ))
        }
    }

    /// `self + other`; an error if the currencies differ or the sum overflows.
    pub fn checked_add(&self, other: Money) -> Result<Money> {
        self.same_currency(&other)?;
        let amount = self
            .amount
            .checked_add(other.amount)
            .ok_or_else(|| Error::invalid("amount", "sum overflows"))?;
        Ok(Money::new(amount, self.currency))
    }

    /// `self - other`; an error if the currencies differ or the difference overflows.
    pub fn checked_sub(&self, other: Money) -> Result<Money> {
        self.same_currency(&other)?;
        let amount = self
            .amount
            .checked_sub(other.amount)
            .ok_or_else(|| Error::invalid("amount", "difference overflows"))?;
        Ok(Money::new(amount, self.currency))
    }

    /// `self × quantity`.
    pub fn times(&self, quantity: u32) -> Result<Money> {
        let amount = self
            .amount
            .checked_mul(Decimal::from(quantity))
            .ok_or_else(|| Error::invalid("amount", "product overflows"))?;
        Ok(Money::new(amount, self.currency))
    }

    /// `self × ratio`, rounded to the minor unit with `mode` (used for partial refunds).
    pub fn scale(&self, ratio: Decimal, mode: Rounding) -> Result<Money> {
        let amount = self
            .amount
            .checked_mul(ratio)
            .ok_or_else(|| Error::invalid("amount", "product overflows"))?;
        Ok(Money::new(amount, self.currency).round(mode))
    }

    /// The smaller of two amounts in the same currency.
    pub fn min(self, other: Money) -> Result<Money> {
        self.same_currency(&other)?;
        Ok(if other.amount < self.amount {
            other
        } else {
            self
        })
    }

    /// Sums amounts that must all be in `currency`.
    pub fn sum<I: IntoIterator<Item = Money>>(currency: Currency, items: I) -> Result<Money> {
        items
            .into_iter()
            .try_fold(Money::zero(currency), |acc, m| acc.checked_add(m))
    }

    /// Compares two amounts of the same currency.
    pub fn cmp_amount(&self, other: &Money) -> Result<std::cmp::Ordering> {
        self.same_currency(other)?;
        Ok(self.amount.cmp(&other.amount))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = if self.is_minor_exact() {
            self.amount
                .round_dp(self.currency.minor_units())
                .normalize_to(self.currency.minor_units())
        } else {
            self.amount
        };
        write!(f, "{shown} {}", self.currency)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Helper: `Decimal::normalize_to`-like padding to a fixed scale.
trait NormalizeTo {
    fn normalize_to(self, dp: u32) -> Decimal;
}

impl NormalizeTo for Decimal {
    fn normalize_to(self, dp: u32) -> Decimal {
        let mut d = self;
        if d.scale() < dp {
            d.rescale(dp);
        }
        d
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Currency {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("ISO 4217 currency code"))
            .pattern(Some("^[A-Z]{3}$"))
            .examples([serde_json::json!("EUR")])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Currency {}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn rounding_respects_the_currency_minor_unit() {
        let m = Money::new(dec!(10.125), Currency::EUR);
        assert_eq!(m.round(Rounding::HalfUp).amount(), dec!(10.13));
        assert_eq!(m.round(Rounding::HalfEven).amount(), dec!(10.12));
        let y = Money::new(dec!(100.5), Currency::JPY);
        assert_eq!(y.round(Rounding::HalfUp).amount(), dec!(101));
        let k = Money::new(dec!(1.23456), Currency::KWD);
        assert_eq!(k.round(Rounding::Down).amount(), dec!(1.234));
    }

    #[test]
    fn mixing_currencies_is_an_error() {
        let e = Money::from_minor(100, Currency::EUR)
            .checked_add(Money::from_minor(100, Currency::USD))
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidInput {
                    field: "currency",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn unknown_currency_code_is_rejected() {
        assert!(Currency::from_code("XYZ").is_err());
        assert_eq!(Currency::from_code("eur").unwrap(), Currency::EUR);
    }

    #[test]
    fn minor_units_round_trip() {
        let m = Money::from_minor(1999, Currency::EUR);
        assert_eq!(m.to_string(), "19.99 EUR");
        assert_eq!(m.to_minor().unwrap(), 1999);
        assert!(Money::new(dec!(0.001), Currency::EUR).to_minor().is_err());
        assert_eq!(Money::from_minor(5, Currency::KWD).to_string(), "0.005 KWD");
    }

    #[test]
    fn money_serializes_amount_as_a_string() {
        let m = Money::from_minor(1999, Currency::EUR);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"amount":"19.99","currency":"EUR"}"#);
        let back: Money = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }
}
