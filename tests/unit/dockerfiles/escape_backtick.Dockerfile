# escape=`
FROM mcr.microsoft.com/windows/servercore
RUN dir c:\ `
    && echo ok
COPY c:\src c:\dst
ENV A="x`"y" B=c\d
