"""The account pages, included by marketplace/web_urls.py (names under ``marketplace:``).
Sign-up, login, logout and password reset are allauth's, under /accounts/ (marketplace/urls.py)."""
from django.urls import path

from . import organizations, profile, signup

urlpatterns = [
    path("profile/", profile.profile, name="profile"),
    path("profile/tokens/", profile.create_token, name="token-create"),
    path("profile/tokens/<int:pk>/revoke/", profile.revoke_token, name="token-revoke"),
    path("organization/", organizations.my_organization, name="my-organization"),
    path("organizations/<slug:slug>/", organizations.organization, name="organization"),
    path("organizations/<slug:slug>/invitations/", organizations.create_invitation, name="invitation-create"),
    path("organizations/<slug:slug>/invitations/<int:pk>/revoke/", organizations.revoke_invitation,
         name="invitation-revoke"),
    path("organizations/<slug:slug>/members/<int:pk>/role/", organizations.change_role, name="member-role"),
    path("organizations/<slug:slug>/members/<int:pk>/remove/", organizations.remove_member, name="member-remove"),
    path("organizations/<slug:slug>/leave/", organizations.leave, name="organization-leave"),
    path("invitations/<str:token>/", signup.invitation, name="invitation"),
]
