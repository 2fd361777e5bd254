"""The forms of the hosted pages. Every one is a FlaskForm: a missing or wrong CSRF token fails
validation. Field names are part of the public surface (``username``, ``password``, ``code``,
``email``): outside test clients and password managers rely on them."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import BooleanField, HiddenField, PasswordField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from ..storage.directory import EMAIL_RE


def Email() -> Regexp:  # noqa: N802 - reads like the WTForms validator it replaces
    return Regexp(EMAIL_RE, message=_l("Enter an e-mail address like name@example.org."))


class LoginForm(FlaskForm):
    username = StringField(_l("Username or e-mail"), validators=[DataRequired(), Length(max=320)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=1024)])
    remember_me = BooleanField(_l("Keep me signed in"))
    r = HiddenField()
    next = HiddenField()
    submit = SubmitField(_l("Sign in"))


class CodeForm(FlaskForm):
    code = StringField(_l("Code"), validators=[DataRequired(), Length(max=64)])
    factor = HiddenField()
    submit = SubmitField(_l("Verify"))


class NewPasswordForm(FlaskForm):
    new_password = PasswordField(_l("New password"), validators=[DataRequired(), Length(max=1024)])
    confirm = PasswordField(
        _l("Repeat the new password"), validators=[DataRequired(), Length(max=1024)]
    )
    submit = SubmitField(_l("Set password"))


class ChangePasswordForm(NewPasswordForm):
    current_password = PasswordField(
        _l("Current password"), validators=[DataRequired(), Length(max=1024)]
    )
    submit = SubmitField(_l("Change password"))


class ContinueForm(FlaskForm):
    submit = SubmitField(_l("Continue"))


class ConfirmForm(FlaskForm):
    """A bare POST with a CSRF token (logout, revoke, confirming a mailed link)."""

    submit = SubmitField(_l("Confirm"))


class EmailForm(FlaskForm):
    email = StringField(_l("E-mail address"), validators=[DataRequired(), Email(), Length(max=320)])
    submit = SubmitField(_l("Send link"))


class ResetRequestForm(FlaskForm):
    """The reset request takes a username or an e-mail address; the input keeps the name
    ``email`` (the public surface)."""

    email = StringField(_l("Username or e-mail"), validators=[DataRequired(), Length(max=320)])
    submit = SubmitField(_l("Send link"))


class FirstLoginForm(FlaskForm):
    email = StringField(_l("E-mail address"), validators=[DataRequired(), Email(), Length(max=320)])
    control_word = PasswordField(
        _l("Control word from your organisation"), validators=[DataRequired(), Length(max=200)]
    )
    submit = SubmitField(_l("Send sign-in link"))


class RegisterForm(FlaskForm):
    username = StringField(
        _l("Username"),
        validators=[
            DataRequired(),
            Length(max=150),
            Regexp(r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$", message=_l("Letters, digits and . _ @ + -")),
        ],
    )
    email = StringField(_l("E-mail address"), validators=[DataRequired(), Email(), Length(max=320)])
    given_name = StringField(_l("Given name"), validators=[Optional(), Length(max=150)])
    family_name = StringField(_l("Family name"), validators=[Optional(), Length(max=150)])
    new_password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=1024)])
    confirm = PasswordField(
        _l("Repeat the password"), validators=[DataRequired(), Length(max=1024)]
    )
    submit = SubmitField(_l("Create account"))


class ProfileForm(FlaskForm):
    given_name = StringField(_l("Given name"), validators=[Optional(), Length(max=150)])
    family_name = StringField(_l("Family name"), validators=[Optional(), Length(max=150)])
    display_name = StringField(_l("Display name"), validators=[Optional(), Length(max=300)])
    phone = StringField(
        _l("Phone"),
        validators=[
            Optional(),
            Length(max=40),
            Regexp(r"^\+?[0-9 ()./-]{3,40}$", message=_l("Digits, spaces and + ( ) - . / only")),
        ],
    )
    locale = SelectField(_l("Language"), validators=[Optional()])
    timezone = SelectField(_l("Time zone"), validators=[Optional()])
    submit = SubmitField(_l("Save profile"))


class AvatarForm(FlaskForm):
    avatar = FileField(_l("Picture (JPEG or PNG, at least 200×200 pixels, at most 2 MB)"))
    submit = SubmitField(_l("Upload picture"))


class ApprovalForm(FlaskForm):
    approve = SubmitField(_l("Approve"))
    reject = SubmitField(_l("Reject"))


class EmailChangeForm(FlaskForm):
    """A new e-mail address for the account; it changes only when the link mailed there is
    opened. Local accounts confirm with their password (a stolen session alone cannot move the
    address and then reset the password)."""

    new_email = StringField(
        _l("New e-mail address"), validators=[DataRequired(), Email(), Length(max=320)]
    )
    password = PasswordField(_l("Current password"), validators=[Optional(), Length(max=1024)])
    submit = SubmitField(_l("Send confirmation link"))


class TotpSetupForm(CodeForm):
    name = StringField(
        _l("Device name (for example “Work phone”)"), validators=[Optional(), Length(max=100)]
    )
    submit = SubmitField(_l("Verify and save"))
